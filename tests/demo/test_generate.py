"""The seeded generator of the 企业信用贷款 (信易贷) demo: determinism, sizes, exact defect counts."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

import govdx
from govdx.demo._generate import (
    SOCIAL_INSURANCE_TITLE,
    DemoError,
    DemoFiles,
    generate_credit_demo,
    write_credit_demo,
)
from quality._identifiers import (
    is_valid_resident_id,
    is_valid_uscc,
    resident_id_birth_date,
    uscc_region,
)
from quality._regions import division_codes

ROWS = 2000
SEED = 7


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoFiles, list[Path]]:
    return write_credit_demo(tmp_path_factory.mktemp("demo"), rows=ROWS, seed=SEED)


@pytest.fixture(scope="module")
def files(demo: tuple[DemoFiles, list[Path]]) -> DemoFiles:
    return demo[0]


def _read_csv(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    text = path.read_bytes().decode(encoding)
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _read_xlsx(path: Path) -> tuple[list[tuple], list[str]]:
    wb = load_workbook(path)
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    merged = [str(r) for r in ws.merged_cells.ranges]
    wb.close()
    return rows, merged


def _extra_rows(keys: list) -> int:
    """Rows carrying a key that an earlier row already carries (rows − distinct keys)."""
    return len(keys) - len(set(keys))


def test_same_seed_same_bytes(files: DemoFiles, tmp_path: Path) -> None:
    again = generate_credit_demo(tmp_path / "again", rows=ROWS, seed=SEED)
    for name, path in files.paths.items():
        assert again.paths[name].read_bytes() == path.read_bytes(), name
    assert again.defects == files.defects and again.facts == files.facts


def test_other_seed_other_bytes(files: DemoFiles, tmp_path: Path) -> None:
    other = generate_credit_demo(tmp_path / "other", rows=ROWS, seed=SEED + 1)
    for name, path in files.paths.items():
        assert other.paths[name].read_bytes() != path.read_bytes(), name


def test_row_counts(files: DemoFiles) -> None:
    assert files.rows == {
        "enterprise_registry": 2000,
        "tax_payment": 2800,  # 2 years × round(0.7 × 2000)
        "social_insurance": 200,
        "bank_applicants": 100,
    }
    assert len(_read_csv(files.enterprise_registry)) == 2000
    assert len(_read_csv(files.tax_payment, "gb18030")) == 2800
    assert len(_read_csv(files.bank_applicants)) == 100
    rows, _ = _read_xlsx(files.social_insurance)
    assert len(rows) == 2 + 200


def test_registry_defects_exact(files: DemoFiles) -> None:
    expected = {
        "uscc_bad_check": 4,
        "resident_id_bad_check": 4,
        "blank_required": 2,
        "duplicate_key": 1,
        "malformed_date": 1,
        "negative_capital": 1,
    }
    assert files.defects["enterprise_registry"] == expected
    rows = _read_csv(files.enterprise_registry)
    usccs = [r["统一社会信用代码"] for r in rows]
    assert sum(not is_valid_uscc(v) for v in usccs) == expected["uscc_bad_check"]
    ids = [r["法定代表人身份证号"] for r in rows]
    assert sum(not is_valid_resident_id(v) for v in ids) == expected["resident_id_bad_check"]
    assert sum(r["企业名称"] == "" for r in rows) == expected["blank_required"]
    assert all(r["法定代表人"] and r["注册地行政区划代码"] for r in rows)
    assert _extra_rows(usccs) == expected["duplicate_key"]

    def bad_date(v: str) -> bool:
        try:
            dt.date.fromisoformat(v)
        except ValueError:
            return True
        return False

    assert sum(bad_date(r["成立日期"]) for r in rows) == expected["malformed_date"]
    assert sum(Decimal(r["注册资本(万元)"]) < 0 for r in rows) == expected["negative_capital"]


def test_registry_values_are_plausible(files: DemoFiles) -> None:
    rc = division_codes()
    rows = _read_csv(files.enterprise_registry)
    assert list(rows[0]) == [
        "统一社会信用代码",
        "企业名称",
        "法定代表人",
        "法定代表人身份证号",
        "注册地行政区划代码",
        "注册资本(万元)",
        "成立日期",
    ]
    for r in rows:
        assert uscc_region(r["统一社会信用代码"]) == r["注册地行政区划代码"]
        assert rc.is_known(r["注册地行政区划代码"])
        assert r["统一社会信用代码"][:2] in {"91", "92", "93"}
        assert 2 <= len(r["法定代表人"]) <= 4
        assert resident_id_birth_date(r["法定代表人身份证号"]).year in range(1950, 2005)
        assert rc.is_known(r["法定代表人身份证号"][:6])
        name = r["企业名称"]
        assert name == "" or name.endswith(("公司", "经营部", "农民专业合作社"))
    ids = [r["法定代表人身份证号"] for r in rows]
    assert sum(v.endswith("X") for v in ids) > 100  # ≈ 1/11 of the check characters
    retired = set(rc.county_codes_retired())
    assert sum(v[:6] in retired for v in ids) > 0  # historical codes such as 110104


def test_tax_file_is_gbk_and_defects_exact(files: DemoFiles) -> None:
    raw = files.tax_payment.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("gb18030")  # strict
    assert text.startswith('"纳税人识别号","纳税人名称"')
    assert raw.count(b"\r\n") == 2801
    expected = {"uscc_bad_check": 3, "blank_required": 3, "duplicate_key": 1}
    assert files.defects["tax_payment"] == expected
    rows = _read_csv(files.tax_payment, "gb18030")
    assert sum(not is_valid_uscc(r["纳税人识别号"]) for r in rows) == expected["uscc_bad_check"]
    assert sum(r["实缴税额(元)"] == "" for r in rows) == expected["blank_required"]
    keys = [(r["纳税人识别号"], r["纳税年度"]) for r in rows]
    assert _extra_rows(keys) == expected["duplicate_key"]
    assert Counter(r["纳税年度"] for r in rows) == {"2024": 1400, "2025": 1400}
    assert {r["纳税信用等级"] for r in rows} == set("ABCDM")
    registry = {r["统一社会信用代码"] for r in _read_csv(files.enterprise_registry)}
    valid = {r["纳税人识别号"] for r in rows if is_valid_uscc(r["纳税人识别号"])}
    assert valid <= registry


def test_social_insurance_xlsx_title_and_defects_exact(files: DemoFiles) -> None:
    rows, merged = _read_xlsx(files.social_insurance)
    assert rows[0][0] == SOCIAL_INSURANCE_TITLE and all(v is None for v in rows[0][1:])
    assert merged == ["A1:E1"]
    assert rows[1] == ("公民身份号码", "姓名", "单位统一社会信用代码", "月缴费基数(元)", "缴费月数")
    data = rows[2:]
    expected = {
        "resident_id_lower_x": 1,
        "resident_id_legacy_15": 1,
        "resident_id_bad_check": 1,
        "blank_required": 1,
        "duplicate_key": 1,
    }
    assert files.defects["social_insurance"] == expected
    ids = [r[0] for r in data]
    assert sum(v.endswith("x") and is_valid_resident_id(v) for v in ids) == 1
    assert sum(len(v) == 15 for v in ids) == 1
    assert sum(len(v) == 18 and not is_valid_resident_id(v) for v in ids) == 1
    assert sum(r[3] is None for r in data) == 1
    assert _extra_rows(ids) == 1
    registry = {r["统一社会信用代码"] for r in _read_csv(files.enterprise_registry)}
    assert all(r[2] in registry and is_valid_uscc(r[2]) for r in data)
    assert all(r[3] is None or 3500 <= r[3] <= 36000 for r in data)
    assert all(1 <= r[4] <= 12 for r in data)


def test_bank_applicants(files: DemoFiles) -> None:
    rows = _read_csv(files.bank_applicants)
    assert list(rows[0]) == ["统一社会信用代码", "申请金额(元)"]
    usccs = [r["统一社会信用代码"] for r in rows]
    assert all(is_valid_uscc(v) for v in usccs) and _extra_rows(usccs) == 0
    registry = {r["统一社会信用代码"] for r in _read_csv(files.enterprise_registry)}
    tax = {r["纳税人识别号"] for r in _read_csv(files.tax_payment, "gb18030")}
    assert sum(v in registry for v in usccs) == files.facts["applicants_registered"] == 50
    assert sum(v in tax for v in usccs) == files.facts["applicants_in_tax"]
    assert 20 <= files.facts["applicants_in_tax"] <= 50
    assert files.defects["bank_applicants"] == {}
    assert all(int(r["申请金额(元)"]) % 10_000 == 0 for r in rows)


def test_contracts_load_and_match_files(demo: tuple[DemoFiles, list[Path]]) -> None:
    files, contracts = demo
    loaded = {c.name: c for c in map(govdx.load_contract, contracts)}
    assert set(loaded) == {"enterprise_registry", "tax_payment", "social_insurance"}
    assert {c.code for c in loaded.values()} == {"SCJG-0001", "SWJ-0001", "RSJ-0001"}
    for name, contract in loaded.items():
        assert contract.source_path() == files.paths[name].resolve()
        assert contract.share.type is govdx.ShareType.conditional
        assert contract.open.type is govdx.OpenType.none
    reg = loaded["enterprise_registry"]
    assert reg.privacy_unit == "uscc" and reg.primary_key == ["uscc"]
    assert reg.field("uscc").pi is govdx.PersonalInfo.none
    assert reg.field("legal_rep_id").pi is govdx.PersonalInfo.sensitive
    assert [f.name for f in reg.protected_fields] == ["legal_rep_id"]
    assert loaded["tax_payment"].source.encoding == "gbk"
    si = loaded["social_insurance"]
    assert si.source.format == "xlsx" and si.source.header_row == 2
    assert si.privacy_unit == "resident_id"
    assert {f.name for f in si.protected_fields} == {"resident_id", "contribution_base"}
    # every contract field's title is a column of its file, in order
    headers = {
        "enterprise_registry": list(_read_csv(files.enterprise_registry)[0]),
        "tax_payment": list(_read_csv(files.tax_payment, "gb18030")[0]),
        "social_insurance": list(_read_xlsx(files.social_insurance)[0][1]),
    }
    for name, contract in loaded.items():
        assert [f.title for f in contract.fields] == headers[name], name


def test_too_few_rows_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="at least 100"):
        generate_credit_demo(tmp_path, rows=99)
