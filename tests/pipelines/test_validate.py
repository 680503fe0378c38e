import pyarrow as pa
import pytest

from pipelines import QualityGateError, duplicate_key_rejects, quality_gate, validate
from tests.conftest import make_contract

# valid GB 32100 codes standing for the letters the tests use (element uscc is checked now)
USCC = {
    "A": "91110108MA01AAAA55",
    "B": "91110108MA01BBBB84",
    "C": "91110108MA01CCCC01",
    "D": "91110108MA01DDDD30",
}
LETTER = {v: k for k, v in USCC.items()}


def _typed(usccs: list[str | None]) -> pa.Table:
    n = len(usccs)
    return pa.table(
        {
            "uscc": pa.array([USCC.get(u, u) if u else u for u in usccs], pa.string()),
            "legal_rep_id": pa.array(["11010519491231002X"] * n, pa.string()),
            "reg_capital": pa.array([None] * n, pa.decimal128(38, 2)),
            "_row": pa.array(range(2, n + 2), pa.int64()),
        }
    )


def test_duplicate_primary_key_keeps_first_and_rejects_later_rows():
    t = _typed(["A", "B", "A", "C", "A", "B"])
    rej = duplicate_key_rejects(t, make_contract())
    assert rej["_row"].to_pylist() == [4, 6, 7]
    assert [LETTER[v] for v in rej["value"].to_pylist()] == ["A", "A", "B"]
    assert all("主键重复" in r for r in rej["reason"].to_pylist())


def test_validate_accounts_for_every_row_and_merges_prior_rejects():
    t = _typed(["A", "B", "A", "C"])
    prior = pa.table(
        {
            "_row": pa.array([9, 9], pa.int64()),
            "field": ["reg_capital", "uscc"],
            "value": ["x", ""],
            "reason": ["bad", "blank"],
        }
    )
    result = validate(t, make_contract(), rows_in=5, prior_rejects=prior)
    assert [LETTER[v] for v in result.passed["uscc"].to_pylist()] == ["A", "B", "C"]
    assert result.rows_quarantined == 2  # row 4 (duplicate) and row 9 (two reasons, one row)
    assert result.rejects.num_rows == 3
    assert result.pass_rate == pytest.approx(3 / 5)


def test_validate_refuses_lost_rows():
    with pytest.raises(AssertionError, match="row accounting broken"):
        validate(_typed(["A"]), make_contract(), rows_in=3)


def test_quality_gate_names_file_and_threshold():
    t = _typed(["A", "A", "A", "A"])
    result = validate(t, make_contract(quality={"min_pass_rate": 0.9}), rows_in=4)
    with pytest.raises(QualityGateError, match=r"x\.csv: pass rate 25\.00% .* 90\.00%") as info:
        quality_gate(result, make_contract(quality={"min_pass_rate": 0.9}), file="x.csv")
    assert info.value.quarantined == 3
    quality_gate(result, make_contract(quality={"min_pass_rate": 0.25}), file="x.csv")
