"""Check characters of resident identity numbers (GB 11643) and USCCs (GB 32100), and GB/T 2260."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality._identifiers import (
    USCC_ALPHABET,
    USCC_WEIGHTS,
    IdentifierError,
    is_valid_resident_id,
    is_valid_uscc,
    org_code_check_char,
    org_code_check_chars,
    resident_id_birth_date,
    resident_id_check_char,
    resident_id_check_chars,
    resident_id_checks,
    resident_id_region,
    upgrade_legacy_resident_id,
    uscc_check_char,
    uscc_check_chars,
    uscc_checks,
    uscc_region,
)
from quality._regions import DivisionCodesError, division_codes

GB11643_EXAMPLE = "11010519491231002X"  # the example of GB 11643-1999
GB32100_EXAMPLE = "91350100M000100Y43"  # appears in GB 32100-2015 explanatory materials
MONTH_13 = "110105194913310021"  # MOD 11-2 passes, birth month 13
FEB29_1949 = "110105194902290029"  # MOD 11-2 passes, 1949 is not a leap year
FEB29_2000 = "110105200002290021"  # leap day of a leap year


def _rid_row(value: str | None) -> dict:
    return resident_id_checks(pa.array([value], pa.string())).to_pylist()[0]


def _uscc_row(value: str | None) -> dict:
    return uscc_checks(pa.array([value], pa.string())).to_pylist()[0]


# --- resident identity number ------------------------------------------------------------------
def test_gb11643_example() -> None:
    assert resident_id_check_char(GB11643_EXAMPLE[:17]) == "X"
    assert is_valid_resident_id(GB11643_EXAMPLE)
    assert resident_id_birth_date(GB11643_EXAMPLE) == dt.date(1949, 12, 31)
    assert resident_id_region(GB11643_EXAMPLE) == "110105"
    assert _rid_row(GB11643_EXAMPLE) == {
        "well_formed": True,
        "check_ok": True,
        "birth_date_ok": True,
        "is_legacy_15": False,
        "lower_x": False,
        "valid": True,
        "birth_date": dt.date(1949, 12, 31),
        "region": "110105",
        "sex": "F",  # sequence 002: even
    }


@pytest.mark.parametrize(
    ("value", "check_ok", "date_ok"),
    [
        pytest.param("110105194912310021", False, True, id="wrong-check-1"),
        pytest.param("110105194912310020", False, True, id="wrong-check-0"),
        pytest.param(MONTH_13, True, False, id="month-13"),
        pytest.param(FEB29_1949, True, False, id="feb-29-not-leap"),
        pytest.param(FEB29_2000, True, True, id="feb-29-leap"),
    ],
)
def test_resident_id_check_and_date(value: str, check_ok: bool, date_ok: bool) -> None:
    assert is_valid_resident_id(value) is (check_ok and date_ok)
    row = _rid_row(value)
    assert (row["well_formed"], row["check_ok"], row["birth_date_ok"], row["valid"]) == (
        True,
        check_ok,
        date_ok,
        check_ok and date_ok,
    )
    assert (row["birth_date"] is not None) is date_ok


def test_month_13_refused_by_birth_date() -> None:
    with pytest.raises(IdentifierError, match="birth date"):
        resident_id_birth_date(MONTH_13)


def test_lower_case_x_is_check_ok_but_flagged() -> None:
    lower = GB11643_EXAMPLE.lower()
    assert is_valid_resident_id(lower)
    row = _rid_row(lower)
    assert row["check_ok"] and row["valid"] and row["lower_x"]
    assert not _rid_row(GB11643_EXAMPLE)["lower_x"]


def test_legacy_15_digit_id() -> None:
    legacy = "110105491231002"
    assert not is_valid_resident_id(legacy)
    row = _rid_row(legacy)
    assert row["is_legacy_15"] and not row["well_formed"] and not row["valid"]
    assert not row["check_ok"] and not row["lower_x"]
    assert row["birth_date_ok"] and row["birth_date"] == dt.date(1949, 12, 31)
    assert row["region"] == "110105" and row["sex"] == "F"
    assert resident_id_birth_date(legacy) == dt.date(1949, 12, 31)
    assert upgrade_legacy_resident_id(legacy) == GB11643_EXAMPLE
    # legacy with an impossible date: recognised, no crash
    assert _rid_row("110105491331002")["is_legacy_15"]
    assert not _rid_row("110105491331002")["birth_date_ok"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("11010519491231002", id="17-chars"),
        pytest.param("11010519491231002XX", id="19-chars"),
        pytest.param("1101051949123100X2", id="x-inside"),
        pytest.param(" 11010519491231002X", id="leading-space"),
        pytest.param("１１０１０５１９４９１２３１００２Ｘ", id="full-width"),
        pytest.param("11010519491231002Y", id="check-y"),
        pytest.param("张三李四王五赵六孙七钱八", id="chinese-text"),
    ],
)
def test_resident_id_malformed(value: str) -> None:
    assert not is_valid_resident_id(value)
    row = _rid_row(value)
    assert not row["well_formed"] and not row["valid"] and not row["is_legacy_15"]
    assert row["region"] is None and row["birth_date"] is None


def test_resident_id_non_string_is_invalid() -> None:
    assert not is_valid_resident_id(None)
    assert not is_valid_resident_id(11010519491231002)


@pytest.mark.parametrize("bad", ["1101051949123100", "1101051949123100a", "１" * 17, 1234])
def test_resident_id_check_char_refuses(bad: object) -> None:
    with pytest.raises(IdentifierError, match="17 ASCII digits"):
        resident_id_check_char(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        resident_id_check_char(bad)  # type: ignore[arg-type]


def test_resident_id_checks_nulls_slices_and_types() -> None:
    values = [GB11643_EXAMPLE, None, MONTH_13, "110105491231002", "x"]
    base = pa.array(["pad", *values], pa.string()).slice(1)  # non-zero offset
    table = resident_id_checks(base)
    assert table.num_rows == 5
    assert table["valid"].to_pylist() == [True, None, False, False, False]
    assert table["check_ok"].to_pylist() == [True, None, True, False, False]
    assert table["is_legacy_15"].to_pylist() == [False, None, False, True, False]
    assert table.schema.field("birth_date").type == pa.date32()
    chunked = pa.chunked_array([values[:2], values[2:]], pa.large_string())
    assert resident_id_checks(chunked).equals(table)
    dictionary = pa.array(values, pa.string()).dictionary_encode()
    assert resident_id_checks(dictionary).equals(table)
    with pytest.raises(IdentifierError, match="string array"):
        resident_id_checks(pa.array([1, 2]))


def test_resident_id_check_chars_vectorized() -> None:
    out = resident_id_check_chars(pa.array(["11010519491231002", None, "11010519491331002"]))
    assert out.to_pylist() == ["X", None, "1"]
    with pytest.raises(IdentifierError):
        resident_id_check_chars(pa.array(["1101051949123100"]))


def test_resident_id_region_known() -> None:
    rc = division_codes()
    table = resident_id_checks(
        pa.array([GB11643_EXAMPLE, "110104195001010013", "990000195001010013", None, "x"]),
        regions=rc,
    )
    # 110104 宣武区 was abolished in 2010 but stays a known code; 990000 never existed
    assert table["region_known"].to_pylist() == [True, True, False, None, False]


_digit17 = st.text(alphabet="0123456789", min_size=17, max_size=17)


@settings(max_examples=300, deadline=None)
@given(body=_digit17, pos=st.integers(0, 17), delta=st.integers(1, 10))
def test_resident_id_round_trip_and_single_substitution(body: str, pos: int, delta: int) -> None:
    full = body + resident_id_check_char(body)
    table = resident_id_checks(pa.array([full]))
    assert table["check_ok"][0].as_py()
    # MOD 11-2 detects every single-character substitution (weights are non-zero mod 11)
    chars = "0123456789X" if pos == 17 else "0123456789"
    new = chars[(chars.index(full[pos]) + delta) % len(chars)]
    if new == full[pos]:
        return
    mutated = full[:pos] + new + full[pos + 1 :]
    assert not resident_id_checks(pa.array([mutated]))["check_ok"][0].as_py()


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.text(alphabet="0123456789Xx", min_size=14, max_size=19),
            _digit17.map(lambda b: b + resident_id_check_char(b)),
            st.text(max_size=20),
        ),
        max_size=20,
    )
)
def test_resident_id_vector_matches_scalar(values: list[str | None]) -> None:
    table = resident_id_checks(pa.array(values, pa.string()))
    for value, valid, born in zip(
        values, table["valid"].to_pylist(), table["birth_date"].to_pylist(), strict=True
    ):
        if value is None:
            assert valid is None
            continue
        assert valid is is_valid_resident_id(value), value
        if born is not None:
            assert resident_id_birth_date(value) == born


# --- unified social credit code ----------------------------------------------------------------
def test_gb32100_example() -> None:
    assert USCC_WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert org_code_check_char("M000100Y") == "4"
    assert uscc_check_char(GB32100_EXAMPLE[:17]) == "3"
    assert is_valid_uscc(GB32100_EXAMPLE)
    assert uscc_region(GB32100_EXAMPLE) == "350100"
    assert _uscc_row(GB32100_EXAMPLE) == {
        "well_formed": True,
        "check_ok": True,
        "org_code_ok": True,
        "illegal_char": False,
        "lower_case": False,
        "valid": True,
        "region": "350100",
    }


def test_uscc_wrong_check_chars() -> None:
    assert not is_valid_uscc("91350100M000100Y44")
    row = _uscc_row("91350100M000100Y44")
    assert row["well_formed"] and not row["check_ok"] and row["org_code_ok"] and not row["valid"]
    # organisation-code check broken but the MOD 31 check recomputed over it
    body = "91350100M000100Y5"
    code = body + uscc_check_char(body)
    assert not is_valid_uscc(code)
    assert is_valid_uscc(code, check_org_code=False)
    row = _uscc_row(code)
    assert row["check_ok"] and not row["org_code_ok"] and not row["valid"]


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_uscc_illegal_letter(letter: str) -> None:
    value = "91350100M" + letter + "00100Y43"
    assert len(value) == 18
    assert not is_valid_uscc(value)
    row = _uscc_row(value)
    assert row["illegal_char"] and not row["well_formed"] and not row["valid"]
    assert row["region"] is None
    with pytest.raises(IdentifierError, match="USCC"):
        uscc_check_char(value[:17])
    with pytest.raises(IdentifierError):
        uscc_region(value)
    # an illegal letter is flagged at any length too
    assert _uscc_row(value[:10])["illegal_char"]


def test_uscc_lower_case_normalised_and_flagged() -> None:
    lower = GB32100_EXAMPLE.lower()
    assert is_valid_uscc(lower)
    row = _uscc_row(lower)
    assert row["valid"] and row["lower_case"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "91350100M000100Y4",
        "91350100M000100Y431",
        "91350100M000100Y4 ",
        "统一社会信用代码十八位字符串啊",
    ],
)
def test_uscc_malformed(value: str) -> None:
    assert not is_valid_uscc(value)
    row = _uscc_row(value)
    assert not row["well_formed"] and not row["valid"]


def test_org_code_check_char_refuses() -> None:
    with pytest.raises(IdentifierError, match="organisation code"):
        org_code_check_char("M000100")
    with pytest.raises(IdentifierError):
        org_code_check_char("m000100y")


def test_uscc_vector_helpers() -> None:
    assert uscc_check_chars(pa.array([GB32100_EXAMPLE[:17], None])).to_pylist() == ["3", None]
    assert org_code_check_chars(pa.array(["M000100Y"])).to_pylist() == ["4"]
    with pytest.raises(IdentifierError):
        uscc_check_chars(pa.array(["91350100M000100YI"]))
    table = uscc_checks(pa.array(["pad", GB32100_EXAMPLE, None], pa.string()).slice(1))
    assert table["valid"].to_pylist() == [True, None]
    rc = division_codes()
    known = uscc_checks(pa.array([GB32100_EXAMPLE, "91990100M000100Y43"]), regions=rc)
    assert known["region_known"].to_pylist()[0] is True


_uscc17 = st.text(alphabet=USCC_ALPHABET, min_size=2, max_size=2).flatmap(
    lambda head: st.tuples(
        st.just(head),
        st.text(alphabet="0123456789", min_size=6, max_size=6),
        st.text(alphabet=USCC_ALPHABET, min_size=8, max_size=8),
    )
)


def _make_uscc(parts: tuple[str, str, str]) -> str:
    head, region, org8 = parts
    body = head + region + org8 + org_code_check_char(org8)
    return body + uscc_check_char(body)


@settings(max_examples=300, deadline=None)
@given(parts=_uscc17, pos=st.integers(0, 17), delta=st.integers(1, 30))
def test_uscc_round_trip_and_single_substitution(
    parts: tuple[str, str, str], pos: int, delta: int
) -> None:
    code = _make_uscc(parts)
    assert is_valid_uscc(code)
    assert uscc_checks(pa.array([code]))["valid"][0].as_py()
    # MOD 31 detects every single-character substitution (31 is prime, weights non-zero)
    new = USCC_ALPHABET[(USCC_ALPHABET.index(code[pos]) + delta) % 31]
    mutated = code[:pos] + new + code[pos + 1 :]
    assert not is_valid_uscc(mutated, check_org_code=False)
    assert not uscc_checks(pa.array([mutated]))["check_ok"][0].as_py()


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.text(alphabet=USCC_ALPHABET + "IOZSVabcxy", min_size=16, max_size=19),
            _uscc17.map(_make_uscc),
            st.text(max_size=20),
        ),
        max_size=20,
    )
)
def test_uscc_vector_matches_scalar(values: list[str | None]) -> None:
    table = uscc_checks(pa.array(values, pa.string()))
    for value, valid, illegal in zip(
        values, table["valid"].to_pylist(), table["illegal_char"].to_pylist(), strict=True
    ):
        if value is None:
            assert valid is None
            continue
        assert valid is is_valid_uscc(value), value
        assert illegal is any(c in "IOZSViozsv" for c in value)


# --- GB/T 2260 division codes ------------------------------------------------------------------
def test_division_codes_history() -> None:
    rc = division_codes()
    assert division_codes() is rc  # cached
    assert "110104" in rc.all_codes and "110104" not in rc.in_use
    assert rc.is_known("110104") and rc.name("110104") == "宣武区"
    assert rc.is_known("110104", 2009) and not rc.is_known("110104", 2010)
    # 120110: 东郊区 1981-1992, 东丽区 since 1992 (a reused code)
    assert rc.name("120110") == "东丽区"
    assert [p.name for p in rc.history("120110")] == ["东丽区", "东郊区"]
    assert rc.is_known("120110", 1985) and rc.is_known("120110", 2024)
    assert not rc.is_known("990000") and rc.history("990000") == ()
    with pytest.raises(KeyError, match="990000"):
        rc.name("990000")
    assert len(rc.all_codes) == 6450 and len(rc.in_use) == 3213
    assert rc.table.num_rows == 6823


def test_county_codes_in_use() -> None:
    rc = division_codes()
    counties = rc.county_codes_in_use()
    assert counties == sorted(counties)
    assert len(counties) == 2846
    assert "110105" in counties and "110000" not in counties and "110104" not in counties
    retired = rc.county_codes_retired()
    assert "110104" in retired and not set(retired) & set(counties)


def test_division_codes_errors(tmp_path: Path) -> None:
    with pytest.raises(DivisionCodesError, match="not found"):
        division_codes(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "代码,一级行政区,二级行政区,名称,级别,状态,启用时间,变更/弃用时间,新代码\n"
        "110000,北京市,,北京市,省级,在用,1981,,\n"
        "11010,北京市,直辖,东城区,县级,在用,1981,,\n",
        encoding="utf-8",
    )
    with pytest.raises(DivisionCodesError, match=r"row 3, column 代码"):
        division_codes(bad)
    short = tmp_path / "short.csv"
    short.write_text("代码,名称\n110000,北京市\n", encoding="utf-8")
    with pytest.raises(DivisionCodesError, match="missing column"):
        division_codes(short)
