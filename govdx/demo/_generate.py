"""Seeded synthetic data of the demo scenario 企业信用贷款 (信易贷): a bank asks about loan applicants.

Three departments publish, the bank requests::

    <workdir>/                              written by write_credit_demo()
      enterprise_registry.yaml              contracts (copied from govdx/demo/contracts/credit/),
      tax_payment.yaml                      whose source paths are relative: data/<file>
      social_insurance.yaml
      data/                                 written by generate_credit_demo(<workdir>/data)
        enterprise_registry.csv             市场监督管理局 (SCJG) 企业登记, UTF-8, `rows` rows
        tax_payment.csv                     税务局 (SWJ) 纳税信息, GBK, CRLF, ≈1.4 × rows rows
        social_insurance.xlsx               人力资源和社会保障局 (RSJ) 参保缴费, title row 1
                                            (merged A1:E1), header row 2, max(50, rows // 10) rows
        bank_applicants.csv                 the bank's applicant list, UTF-8,
                                            max(50, rows // 20) rows; requester side, never
                                            ingested into the lakehouse

The registry is the largest file and a CSV; the XLSX (slow to write and read with openpyxl) is the
smallest department file. Every file is a pure function of ``(seed, rows)``: the same pair gives
byte-identical files (numpy ``Generator`` streams spawned from one ``SeedSequence``; the XLSX zip
entries and document properties carry a fixed time).

Identifiers are valid by construction: resident identity numbers (GB 11643-1999) with region codes
from the GB/T 2260 list (:func:`quality.division_codes`, county level in use, plus ≈3 % abolished
codes such as 110104 宣武区), birth dates 1950-01-01..2004-12-31, unique (birth date, sequence)
pairs, so no two persons share a number; unified social credit codes (GB 32100-2015) ``91``/``92``/
``93`` (enterprise, 个体工商户, 农民专业合作社) with unique organisation codes (old 8-digit and
``MA``-style) carrying valid GB 11714 check characters. Check characters come from
:mod:`quality._identifiers`.

Defects are injected at small documented rates (:data:`DEFECT_RATES`, count =
``max(1, round(rate × file rows))``, capped by the eligible rows for ``resident_id_lower_x``
and ``resident_id_legacy_15``) into disjoint rows, and the exact counts are returned in
:attr:`DemoFiles.defects`:

* ``uscc_bad_check`` / ``resident_id_bad_check`` — the last character replaced by another
  character of the set (the organisation-code check and birth date stay valid);
* ``resident_id_lower_x`` — a check character ``X`` written ``x`` (only rows whose check is ``X``);
* ``resident_id_legacy_15`` — the legacy 15-digit form (only persons born 1950-1999);
* ``blank_required`` — a required field left blank (registry 企业名称, tax 实缴税额(元),
  social insurance 月缴费基数(元));
* ``duplicate_key`` — a row carrying the primary key of another, clean row (registry USCC; tax
  (纳税人识别号, 纳税年度) within the same year; social insurance 公民身份号码); the number of
  such extra rows, i.e. ``rows − distinct keys``;
* ``malformed_date`` — 成立日期 that is not a calendar date (``YYYY-02-30`` or ``YYYY-13-01``);
* ``negative_capital`` — 注册资本(万元) below zero.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from govdx._errors import GovdxError
from quality._identifiers import (
    USCC_ALPHABET,
    org_code_check_chars,
    resident_id_check_chars,
    uscc_check_chars,
)
from quality._regions import RegionCodes, division_codes

__all__ = [
    "CONTRACTS_DIR",
    "DEFECT_RATES",
    "DemoError",
    "DemoFiles",
    "generate_credit_demo",
    "write_credit_demo",
]

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts" / "credit"
"""Folder of the scenario's contracts (enterprise_registry, tax_payment, social_insurance)."""

DEFECT_RATES: dict[str, dict[str, float]] = {
    "enterprise_registry": {
        "uscc_bad_check": 0.002,
        "resident_id_bad_check": 0.002,
        "blank_required": 0.001,
        "duplicate_key": 0.0005,
        "malformed_date": 0.0005,
        "negative_capital": 0.0005,
    },
    "tax_payment": {
        "uscc_bad_check": 0.001,
        "blank_required": 0.001,
        "duplicate_key": 0.0005,
    },
    "social_insurance": {
        "resident_id_lower_x": 0.001,
        "resident_id_legacy_15": 0.001,
        "resident_id_bad_check": 0.002,
        "blank_required": 0.001,
        "duplicate_key": 0.001,
    },
    "bank_applicants": {},
}
"""Defect rates per file and kind (share of the file's rows); count = max(1, round(rate × rows))."""

MIN_ROWS = 100
TAX_YEARS = (2024, 2025)
SOCIAL_INSURANCE_TITLE = "某市社会保险参保缴费信息（截至2026年10月）"
_FIXED_TIME = datetime(2026, 10, 31, 0, 0, 0)

REGISTRY_COLUMNS = (
    "统一社会信用代码",
    "企业名称",
    "法定代表人",
    "法定代表人身份证号",
    "注册地行政区划代码",
    "注册资本(万元)",
    "成立日期",
)
TAX_COLUMNS = ("纳税人识别号", "纳税人名称", "纳税年度", "实缴税额(元)", "纳税信用等级")
SOCIAL_INSURANCE_COLUMNS = (
    "公民身份号码",
    "姓名",
    "单位统一社会信用代码",
    "月缴费基数(元)",
    "缴费月数",
)
BANK_COLUMNS = ("统一社会信用代码", "申请金额(元)")


class DemoError(GovdxError, ValueError):
    """The demo generator was asked for something it cannot make (e.g. too few rows)."""


@dataclass(frozen=True)
class DemoFiles:
    """The files of one generated demo and what was injected into them.

    Attributes:
        data_dir: folder holding the four files.
        enterprise_registry, tax_payment, social_insurance, bank_applicants: file paths.
        seed: the seed used.
        rows: data rows per file (header and title rows excluded), keyed like ``defects``.
        defects: per file, per defect kind (see the module docstring) → exact count injected.
        facts: exact counts useful to tests of later stages: ``applicants_registered`` (bank
            applicants whose USCC is in the registry), ``applicants_in_tax`` (… and in the tax
            file), ``tax_enterprises`` (enterprises with tax rows).
    """

    data_dir: Path
    enterprise_registry: Path
    tax_payment: Path
    social_insurance: Path
    bank_applicants: Path
    seed: int
    rows: dict[str, int]
    defects: dict[str, dict[str, int]]
    facts: dict[str, int] = field(default_factory=dict)

    @property
    def paths(self) -> dict[str, Path]:
        """File path per dataset name (``enterprise_registry`` …)."""
        return {
            "enterprise_registry": self.enterprise_registry,
            "tax_payment": self.tax_payment,
            "social_insurance": self.social_insurance,
            "bank_applicants": self.bank_applicants,
        }


# --- word lists (all GBK-encodable) -------------------------------------------------------------
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤"
)
_SURNAME_WEIGHTS_TOP = [
    7.1,
    7.0,
    6.8,
    5.4,
    4.6,
    3.1,
    2.2,
    2.2,
    2.0,
    1.9,
    1.3,
    1.2,
    1.1,
    1.1,
    1.0,
    1.0,
    0.9,
    0.9,
    0.9,
    0.9,
    0.8,
    0.8,
]
_GIVEN = "".join(
    dict.fromkeys(
        "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华文辉建国玲红鹏飞宇浩婷雪琳晨欣佳怡子涵轩梓"
        "睿博思雨俊志海波斌峰鑫凯慧丹萍燕蕾倩颖璐瑶嘉振东林成荣新春亮宁翔毅昊天晓云彤悦琪锦泽楠"
    )
)
_BRAND = [
    "华信",
    "恒达",
    "鑫源",
    "盛世",
    "瑞丰",
    "宏图",
    "金桥",
    "天成",
    "永盛",
    "佳禾",
    "博远",
    "中联",
    "新元",
    "汇通",
    "锦程",
    "润泽",
    "德盛",
    "嘉诚",
    "东方",
    "海川",
    "正泰",
    "安和",
    "兴业",
    "聚力",
    "昌隆",
    "广源",
    "同创",
    "银河",
    "春晖",
    "远航",
    "智汇",
    "卓越",
    "美林",
    "恒通",
    "祥和",
    "腾飞",
    "泰和",
    "信达",
    "启明",
    "华瑞",
]
_INDUSTRY = [
    "科技",
    "贸易",
    "建筑工程",
    "食品",
    "物流",
    "餐饮管理",
    "信息技术",
    "医药",
    "机械制造",
    "农业开发",
    "电子",
    "服装",
    "建材",
    "环保科技",
    "文化传媒",
    "房地产开发",
    "汽车服务",
    "商贸",
    "新能源",
    "教育咨询",
]
_TAX_GRADES = np.array(list("ABCDM"))
_TAX_GRADE_P = [0.25, 0.50, 0.15, 0.03, 0.07]

_USCC_BYTES = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
_USCC_LUT = np.full(256, -1, dtype=np.int64)
_USCC_LUT[_USCC_BYTES] = np.arange(31)
_RID_CHARS = np.frombuffer(b"0123456789X", dtype=np.uint8)
_RID_LUT = np.full(256, -1, dtype=np.int64)
_RID_LUT[_RID_CHARS] = np.arange(11)

_BIRTH_FIRST = np.datetime64("1950-01-01")
_BIRTH_DAYS = int((np.datetime64("2004-12-31") - _BIRTH_FIRST).astype(int)) + 1
_FOUND_FIRST = np.datetime64("1992-01-01")
_FOUND_DAYS = int((np.datetime64("2026-09-30") - _FOUND_FIRST).astype(int)) + 1


# --- small vectorized helpers -------------------------------------------------------------------
def _strings(matrix: np.ndarray) -> pa.Array:
    """``pa.string()`` array from an ASCII ``uint8[n × width]`` matrix."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [
            None,
            pa.py_buffer(offsets.tobytes()),
            pa.py_buffer(np.ascontiguousarray(matrix).tobytes()),
        ],
    )


def _first_bytes(chars: pa.Array) -> np.ndarray:
    """First byte of each (non-null, non-empty) string of ``chars``, ``uint8[n]``."""
    offsets = np.frombuffer(chars.buffers()[1], dtype=np.int32)[
        chars.offset : chars.offset + len(chars)
    ]
    return np.frombuffer(chars.buffers()[2], dtype=np.uint8)[offsets]


def _ascii(values: np.ndarray, width: int) -> np.ndarray:
    """``uint8[n × width]`` of a numpy array of ASCII strings of exactly ``width`` characters."""
    return np.asarray(values).astype(f"S{width}").view(np.uint8).reshape(-1, width)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers, ``uint8[n × width]`` ASCII."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (values.astype(np.int64)[:, None] // powers) % 10).astype(np.uint8)


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _take(words: list[str] | tuple[str, ...], idx: np.ndarray) -> pa.Array:
    return pa.array(list(words), pa.string()).take(pa.array(idx, pa.int64()))


def _money(cents: np.ndarray) -> pa.Array:
    """Decimal strings with two places (``-123.40``) of integer cents, vectorized."""
    a = np.abs(cents.astype(np.int64))
    whole = pa.array(a // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(a % 100).cast(pa.string()), width=2, padding="0")
    s = _join(whole, ".", frac)
    return pc.if_else(pa.array(cents < 0), _join("-", s), s)


def _null_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def _count(rate: float, n: int) -> int:
    return max(1, round(rate * n))


def _pick(
    rng: np.random.Generator,
    n: int,
    kinds: dict[str, float],
    eligible: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Disjoint row indices per defect kind (in ``kinds`` order) and the mask of clean rows."""
    used = np.zeros(n, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for kind, rate in kinds.items():
        avail = ~used
        if eligible and kind in eligible:
            avail &= eligible[kind]
        pool = np.flatnonzero(avail)
        k = min(_count(rate, n), len(pool))
        idx = np.sort(rng.choice(pool, size=k, replace=False)) if k else pool[:0]
        used[idx] = True
        out[kind] = idx
    return out, ~used


def _bad_check(
    rng: np.random.Generator, m: np.ndarray, rows: np.ndarray, chars: np.ndarray, lut: np.ndarray
) -> None:
    """Replace the last character of ``m[rows]`` by another character of ``chars`` (in place)."""
    k = len(chars)
    cur = lut[m[rows, -1]]
    m[rows, -1] = chars[(cur + rng.integers(1, k, size=len(rows))) % k]


# --- identifiers --------------------------------------------------------------------------------
def _resident_id_matrix(
    rng: np.random.Generator, n: int, county: np.ndarray, retired: np.ndarray, hist_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """``uint8[n × 18]`` resident IDs, unique by (birth date, sequence), and the birth years."""
    draw = rng.choice(_BIRTH_DAYS * 1000, size=n, replace=False)
    day, seq = draw // 1000, draw % 1000
    region = county[rng.integers(0, len(county), size=n)]
    hist = rng.random(n) < hist_rate
    region[hist] = retired[rng.integers(0, len(retired), size=int(hist.sum()))]
    born = _BIRTH_FIRST + day.astype("timedelta64[D]")
    ymd = _ascii(np.datetime_as_string(born, unit="D"), 10)
    m = np.empty((n, 18), dtype=np.uint8)
    m[:, 0:6] = _ascii(region, 6)
    m[:, 6:10], m[:, 10:12], m[:, 12:14] = ymd[:, 0:4], ymd[:, 5:7], ymd[:, 8:10]
    m[:, 14:17] = _digits(seq, 3)
    m[:, 17] = _first_bytes(resident_id_check_chars(_strings(m[:, :17])))
    years = born.astype("datetime64[Y]").astype(np.int64) + 1970
    return m, years


def _uscc_matrix(
    rng: np.random.Generator, n: int, prefixes: np.ndarray, regions: np.ndarray
) -> np.ndarray:
    """``uint8[n × 18]`` USCCs with unique organisation codes (GB 11714) and valid checks."""
    new_style = rng.random(n) < 0.55  # 'MA' + 6 characters, issued since 2015
    k_new = int(new_style.sum())
    new_ids = rng.choice(31**6, size=k_new, replace=False)
    old_ids = rng.choice(10**8, size=n - k_new, replace=False)
    body = np.empty((n, 8), dtype=np.uint8)
    body[~new_style] = _digits(old_ids, 8)
    powers = 31 ** np.arange(5, -1, -1, dtype=np.int64)
    body[new_style, 0] = ord("M")
    body[new_style, 1] = ord("A")
    body[new_style, 2:8] = _USCC_BYTES[(new_ids[:, None] // powers) % 31]
    m = np.empty((n, 18), dtype=np.uint8)
    m[:, 0:2] = _ascii(prefixes, 2)
    m[:, 2:8] = _ascii(regions, 6)
    m[:, 8:16] = body
    m[:, 16] = _first_bytes(org_code_check_chars(_strings(body)))
    m[:, 17] = _first_bytes(uscc_check_chars(_strings(m[:, :17])))
    return m


def _person_names(rng: np.random.Generator, n: int) -> pa.Array:
    weights = np.array(_SURNAME_WEIGHTS_TOP + [0.3] * (len(_SURNAMES) - len(_SURNAME_WEIGHTS_TOP)))
    surnames = [*list(_SURNAMES), "欧阳", "司马"]
    weights = np.concatenate([weights, [0.05, 0.02]])
    s = rng.choice(len(surnames), size=n, p=weights / weights.sum())
    g1 = rng.integers(0, len(_GIVEN), size=n)
    g2 = rng.integers(0, len(_GIVEN), size=n)
    two = rng.random(n) < 0.7
    given = list(_GIVEN)
    second = _null_where(_take(given, g2), ~two)
    second = pc.fill_null(second, "")
    return _join(_take(surnames, s), _take(given, g1), second)


def _city_names(rc: RegionCodes, codes: np.ndarray) -> pa.Array:
    """A short city name for each county code (地级 name without 市, else the county's)."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    names = []
    for code in uniq.tolist():
        pref = code[:4] + "00"
        prov = code[:2] + "0000"
        if rc.is_known(pref) and rc.name(pref).endswith("市"):
            names.append(rc.name(pref)[:-1])
        elif not rc.is_known(pref) and rc.is_known(prov) and rc.name(prov).endswith("市"):
            names.append(rc.name(prov)[:-1])  # 直辖市
        else:
            county = rc.name(code)  # e.g. 木垒哈萨克自治县 → 木垒, 伊宁市 → 伊宁
            if len(county) > 4:
                names.append(county[:2])
            else:
                names.append(
                    county[:-1] if len(county) > 2 and county[-1] in "市县区旗" else county
                )
    return _take(names, inverse)


# --- writers ------------------------------------------------------------------------------------
def _write_csv(table: pa.Table, path: Path, *, encoding: str = "utf-8", eol: str = "\n") -> None:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed", eol=eol))
    data = buf.getvalue()
    if encoding != "utf-8":
        data = data.decode("utf-8").encode(encoding)
    path.write_bytes(data)


class _FixedTimeZip(zipfile.ZipFile):
    """A ZipFile whose entries all carry one fixed time, so that equal content gives equal bytes."""

    def writestr(self, zinfo_or_arcname, data, compress_type=None, compresslevel=None):  # type: ignore[override]
        if not isinstance(zinfo_or_arcname, zipfile.ZipInfo):
            info = zipfile.ZipInfo(zinfo_or_arcname, date_time=_FIXED_TIME.timetuple()[:6])
            info.compress_type = self.compression
            info.external_attr = 0o600 << 16
            zinfo_or_arcname = info
        return super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(self, filename, arcname=None, compress_type=None, compresslevel=None):  # type: ignore[override]
        return self.writestr(
            arcname or str(filename), Path(filename).read_bytes(), compress_type, compresslevel
        )


def _write_xlsx(path: Path, title: str, header: tuple[str, ...], columns: list[list[Any]]) -> None:
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook(write_only=True)
    wb.properties.creator = "govdx demo"
    wb.properties.created = _FIXED_TIME
    wb.properties.modified = _FIXED_TIME
    ws = wb.create_sheet("参保缴费")
    ws.merged_cells.add(f"A1:{get_column_letter(len(header))}1")
    ws.append([title])
    ws.append(list(header))
    for row in zip(*columns, strict=True):
        ws.append(list(row))
    # ExcelWriter directly: openpyxl's save_workbook() would stamp the current time.
    with _FixedTimeZip(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(wb, archive).write_data()


# --- the scenario -------------------------------------------------------------------------------
def generate_credit_demo(out_dir: Path, *, rows: int = 100_000, seed: int = 20261129) -> DemoFiles:
    """Write the four files of the 企业信用贷款 (信易贷) demo into ``out_dir``.

    Layout, encodings, sizes and the injected defects are described in the module docstring;
    the contracts in :data:`CONTRACTS_DIR` read these files as ``data/<file>`` relative to the
    folder above ``out_dir`` (see :func:`write_credit_demo`).

    Args:
        out_dir: folder to write into (created if missing); existing files are overwritten.
        rows: enterprises in the registry (rows of enterprise_registry.csv), at least 100.
            The tax file has ``2 × round(0.7 × rows)`` rows, social insurance
            ``max(50, rows // 10)``, the bank list ``max(50, rows // 20)``.
        seed: seed of the numpy ``Generator`` streams; equal (seed, rows) → equal bytes.

    Returns:
        :class:`DemoFiles` with paths, row counts and exact defect counts.

    Raises:
        DemoError: ``rows`` below 100.

    Examples:
        >>> import tempfile
        >>> files = generate_credit_demo(Path(tempfile.mkdtemp()), rows=1000, seed=1)
        >>> files.rows["enterprise_registry"], files.defects["enterprise_registry"]["uscc_bad_check"]
        (1000, 2)
    """
    if rows < MIN_ROWS:
        raise DemoError(f"rows must be at least {MIN_ROWS} (got {rows})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rc = division_codes()
    county = np.array(rc.county_codes_in_use())
    retired = np.array(rc.county_codes_retired())
    r_reg, r_tax, r_si, r_bank = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    n_app = max(50, rows // 20)
    n_app_reg = n_app // 2
    n_app_new = n_app - n_app_reg
    defects: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}

    # -- 市场监督管理局: enterprise registry ------------------------------------------------------
    n_all = rows + n_app_new  # registry + applicants that are not registered: one unique pool
    kind = r_reg.choice(3, size=n_all, p=[0.93, 0.04, 0.03])
    prefixes = np.array(["91", "92", "93"])[kind]
    prefixes[rows:] = np.array(["91", "92", "52"])[
        r_reg.choice(3, size=n_app_new, p=[0.8, 0.1, 0.1])
    ]
    regions = county[r_reg.integers(0, len(county), size=n_all)]
    hist = r_reg.random(n_all) < 0.005
    regions[hist] = retired[r_reg.integers(0, len(retired), size=int(hist.sum()))]
    uscc_m = _uscc_matrix(r_reg, n_all, prefixes, regions)
    app_new_m = uscc_m[rows:].copy()
    uscc_m, regions, kind = uscc_m[:rows], regions[:rows], kind[:rows]

    rep_m, _ = _resident_id_matrix(r_reg, rows, county, retired, 0.03)
    rep_names = _person_names(r_reg, rows)
    brand = r_reg.integers(0, len(_BRAND), size=rows)
    industry = r_reg.integers(0, len(_INDUSTRY), size=rows)
    suffix_idx = r_reg.choice(3, size=rows, p=[0.90, 0.04, 0.06])
    suffix = np.array(["有限公司", "股份有限公司", "有限责任公司"], dtype=object)[suffix_idx]
    suffix[kind == 1] = "经营部"
    suffix[kind == 2] = "农民专业合作社"
    industry_names = _take(_INDUSTRY, industry)
    industry_names = pc.if_else(pa.array(kind == 2), pa.scalar("种养殖"), industry_names)
    names = _join(_city_names(rc, regions), _take(_BRAND, brand), industry_names, pa.array(suffix))

    common = np.array([10, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000], dtype=np.int64)
    common_p = np.array([3, 6, 12, 22, 12, 10, 14, 10, 5, 4, 2], dtype=float)
    capital = common[r_reg.choice(len(common), size=rows, p=common_p / common_p.sum())] * 100
    odd = r_reg.random(rows) < 0.15
    capital[odd] = np.maximum(
        1, np.round(np.exp(r_reg.normal(np.log(300), 1.2, int(odd.sum()))) * 100)
    )
    founded = _FOUND_FIRST + r_reg.integers(0, _FOUND_DAYS, size=rows).astype("timedelta64[D]")
    founded_s = np.datetime_as_string(founded, unit="D").astype(object)

    pick, reg_clean = _pick(r_reg, rows, DEFECT_RATES["enterprise_registry"])
    _bad_check(r_reg, uscc_m, pick["uscc_bad_check"], _USCC_BYTES, _USCC_LUT)
    _bad_check(r_reg, rep_m, pick["resident_id_bad_check"], _RID_CHARS, _RID_LUT)
    dup = pick["duplicate_key"]
    src = r_reg.choice(np.flatnonzero(reg_clean), size=len(dup), replace=False)
    uscc_m[dup] = uscc_m[src]
    regions[dup] = regions[src]
    for j, i in enumerate(pick["malformed_date"].tolist()):
        y = str(founded_s[i])[:4]
        founded_s[i] = f"{y}-02-30" if j % 2 == 0 else f"{y}-13-01"
    capital[pick["negative_capital"]] *= -1
    blank = np.zeros(rows, dtype=bool)
    blank[pick["blank_required"]] = True

    reg_uscc = _strings(uscc_m)
    registry = pa.table(
        [
            reg_uscc,
            _null_where(names, blank),
            rep_names,
            _strings(rep_m),
            pa.array(regions, pa.string()),
            _money(capital),
            pa.array(founded_s, pa.string()),
        ],
        names=list(REGISTRY_COLUMNS),
    )
    p_reg = out_dir / "enterprise_registry.csv"
    _write_csv(registry, p_reg)
    defects["enterprise_registry"] = {k: len(v) for k, v in pick.items()}
    counts["enterprise_registry"] = rows
    # clean, unique enterprises: not a defect row and not the source of a duplicated key
    reg_clean_unique = reg_clean.copy()
    reg_clean_unique[src] = False
    clean_idx = np.flatnonzero(reg_clean_unique)

    # -- 税务局: tax payments, GBK -------------------------------------------------------------------
    k_tax = min(round(0.7 * rows), len(clean_idx))
    ent = r_tax.choice(clean_idx, size=k_tax, replace=False)
    order = np.concatenate([r_tax.permutation(ent) for _ in TAX_YEARS])
    years = np.repeat(np.array(TAX_YEARS, dtype=np.int64), k_tax)
    n_tax = len(order)
    tax_m = uscc_m[order].copy()
    tax_names = names.take(pa.array(order))
    grade = r_tax.choice(len(_TAX_GRADES), size=n_tax, p=_TAX_GRADE_P)
    scale = np.array([1.6, 1.0, 0.5, 0.2, 0.1])[grade]
    paid = np.round(np.exp(r_tax.normal(np.log(50_000), 1.5, n_tax)) * scale * 100).astype(np.int64)
    pick_t, tax_clean = _pick(r_tax, n_tax, DEFECT_RATES["tax_payment"])
    _bad_check(r_tax, tax_m, pick_t["uscc_bad_check"], _USCC_BYTES, _USCC_LUT)
    dup_t = pick_t["duplicate_key"]
    src_t = np.empty(len(dup_t), dtype=np.int64)
    for b in range(len(TAX_YEARS)):
        in_block = (dup_t // k_tax) == b
        pool = np.flatnonzero(tax_clean[b * k_tax : (b + 1) * k_tax]) + b * k_tax
        src_t[in_block] = r_tax.choice(pool, size=int(in_block.sum()), replace=False)
    tax_m[dup_t] = tax_m[src_t]
    tax_names = (
        pc.replace_with_mask(
            tax_names, pa.array(np.isin(np.arange(n_tax), dup_t)), tax_names.take(pa.array(src_t))
        )
        if len(dup_t)
        else tax_names
    )
    blank_t = np.zeros(n_tax, dtype=bool)
    blank_t[pick_t["blank_required"]] = True
    tax_uscc = _strings(tax_m)
    tax = pa.table(
        [
            tax_uscc,
            tax_names,
            pa.array(years),
            _null_where(_money(paid), blank_t),
            pa.array(_TAX_GRADES[grade], pa.string()),
        ],
        names=list(TAX_COLUMNS),
    )
    p_tax = out_dir / "tax_payment.csv"
    _write_csv(tax, p_tax, encoding="gbk", eol="\r\n")
    defects["tax_payment"] = {k: len(v) for k, v in pick_t.items()}
    counts["tax_payment"] = n_tax

    # -- 人力资源和社会保障局: social insurance, XLSX with a title row ------------------------------
    n_si = max(50, rows // 10)
    si_m, born_year = _resident_id_matrix(r_si, n_si, county, retired, 0.03)
    si_names = _person_names(r_si, n_si)
    employer = _strings(uscc_m[r_si.choice(clean_idx, size=n_si, replace=True)])
    base = np.clip(np.round(np.exp(r_si.normal(np.log(6500), 0.45, n_si))), 3500, 36000)
    months = np.where(r_si.random(n_si) < 0.75, 12, r_si.integers(1, 12, size=n_si))
    eligible = {
        "resident_id_lower_x": si_m[:, 17] == ord("X"),
        "resident_id_legacy_15": born_year < 2000,
    }
    pick_s, si_clean = _pick(r_si, n_si, DEFECT_RATES["social_insurance"], eligible)
    _bad_check(r_si, si_m, pick_s["resident_id_bad_check"], _RID_CHARS, _RID_LUT)
    si_m[pick_s["resident_id_lower_x"], 17] = ord("x")
    dup_s = pick_s["duplicate_key"]
    src_s = r_si.choice(np.flatnonzero(si_clean), size=len(dup_s), replace=False)
    si_m[dup_s] = si_m[src_s]
    if len(dup_s):
        si_names = pc.replace_with_mask(
            si_names, pa.array(np.isin(np.arange(n_si), dup_s)), si_names.take(pa.array(src_s))
        )
    si_ids = _strings(si_m)
    legacy = pick_s["resident_id_legacy_15"]
    if len(legacy):
        short = np.concatenate([si_m[legacy, 0:6], si_m[legacy, 8:17]], axis=1)
        si_ids = pc.replace_with_mask(
            si_ids, pa.array(np.isin(np.arange(n_si), legacy)), _strings(short)
        )
    base_list: list[Any] = base.astype(np.int64).tolist()
    for i in pick_s["blank_required"].tolist():
        base_list[i] = None
    p_si = out_dir / "social_insurance.xlsx"
    _write_xlsx(
        p_si,
        SOCIAL_INSURANCE_TITLE,
        SOCIAL_INSURANCE_COLUMNS,
        [
            si_ids.to_pylist(),
            si_names.to_pylist(),
            employer.to_pylist(),
            base_list,
            months.astype(np.int64).tolist(),
        ],
    )
    defects["social_insurance"] = {k: len(v) for k, v in pick_s.items()}
    counts["social_insurance"] = n_si

    # -- the bank: loan applicants (requester side) ------------------------------------------------
    reg_app = r_bank.choice(clean_idx, size=n_app_reg, replace=False)
    app_m = np.concatenate([uscc_m[reg_app], app_new_m])
    perm = r_bank.permutation(n_app)
    app_uscc = _strings(app_m[perm])
    amount = r_bank.integers(10, 501, size=n_app).astype(np.int64) * 10_000
    bank = pa.table([app_uscc, pa.array(amount)], names=list(BANK_COLUMNS))
    p_bank = out_dir / "bank_applicants.csv"
    _write_csv(bank, p_bank)
    defects["bank_applicants"] = {}
    counts["bank_applicants"] = n_app

    in_tax = pc.is_in(_strings(uscc_m[reg_app]), value_set=tax_uscc)
    facts = {
        "applicants_registered": n_app_reg,
        "applicants_in_tax": int(pc.sum(in_tax).as_py() or 0),
        "tax_enterprises": k_tax,
    }
    return DemoFiles(
        data_dir=out_dir,
        enterprise_registry=p_reg,
        tax_payment=p_tax,
        social_insurance=p_si,
        bank_applicants=p_bank,
        seed=seed,
        rows=counts,
        defects=defects,
        facts=facts,
    )


def write_credit_demo(
    workdir: Path, *, rows: int = 100_000, seed: int = 20261129
) -> tuple[DemoFiles, list[Path]]:
    """Generate the demo data into ``workdir/data`` and copy the three contracts into ``workdir``.

    The contracts' ``source.path`` values are ``data/<file>``, relative to the contract file, so
    the copies in ``workdir`` read the generated files.

    Args:
        workdir: folder to write into (created if missing).
        rows: see :func:`generate_credit_demo`.
        seed: see :func:`generate_credit_demo`.

    Returns:
        ``(files, contract_paths)``: the :class:`DemoFiles` and the paths of
        ``enterprise_registry.yaml``, ``tax_payment.yaml``, ``social_insurance.yaml`` (that order).

    Raises:
        DemoError: ``rows`` below 100.
    """
    workdir = Path(workdir)
    files = generate_credit_demo(workdir / "data", rows=rows, seed=seed)
    paths = []
    for name in ("enterprise_registry", "tax_payment", "social_insurance"):
        dest = workdir / f"{name}.yaml"
        shutil.copyfile(CONTRACTS_DIR / f"{name}.yaml", dest)
        paths.append(dest)
    return files, paths
