import pyarrow as pa
import pytest

from privacy import mask_array, mask_value


@pytest.mark.parametrize(
    ("value", "element", "expected"),
    [
        pytest.param("11010519491231002X", "resident_id", "110105**********2X", id="resident-id"),
        pytest.param("13812345678", "phone", "138******78", id="phone"),
        pytest.param("张三丰", "person_name", "张**", id="name"),
        pytest.param("北京市东城区", "address", "*** (6 chars)", id="other"),
        pytest.param("12", "resident_id", "**", id="too-short"),
        pytest.param(None, "phone", None, id="null"),
    ],
)
def test_mask_value(value, element, expected):
    assert mask_value(value, element) == expected


def test_mask_array_vectorized_keeps_nulls():
    out = mask_array(pa.array(["13812345678", None, "1"]), "phone")
    assert out.to_pylist() == ["138******78", None, "*"]
