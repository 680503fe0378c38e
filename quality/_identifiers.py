"""Check characters of Chinese identifiers: resident identity numbers and unified social credit codes.

Two standards, each as scalar functions (one ``str``) and as vectorized checks over a whole
Arrow string array (no Python loop per value: the values of one byte width are gathered into a
``uint8`` matrix ``[rows × width]`` straight from the Arrow offsets/data buffers and checked with
numpy).

* 公民身份号码 (resident identity number), GB 11643-1999: 6-digit region code (GB/T 2260),
  8-digit birth date ``YYYYMMDD``, 3-digit sequence code (odd for men), and a check character
  by ISO 7064:1983 MOD 11-2 (weights ``2^(17-i) mod 11`` = 7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2;
  check = ``'10X98765432'[Σ mod 11]``). The legacy 15-digit number (GB 11643-1989: region,
  ``YYMMDD`` of a 19xx birth year, 3-digit sequence, no check character) is recognised.
* 统一社会信用代码 (unified social credit code, USCC), GB 32100-2015: 18 characters over the
  31-character set ``0123456789ABCDEFGHJKLMNPQRTUWXY`` (no I, O, Z, S, V): registration authority
  (1), organisation category (1), region code (6, GB/T 2260), organisation code (9, GB 11714-1997,
  whose 9th character is its own MOD 11 check character, weights 3,7,9,10,5,8,4,2, values
  0-9 → 0-9 and A-Z → 10-35, ``C = 11 − Σ mod 11`` with 10 → ``X`` and 11 → ``0``) and a check
  character: weights ``3^i mod 31``, ``C = 31 − Σ mod 31`` with 31 → ``0``.

Normalisation: the validators upper-case before checking the check character, and report the
lower-case spelling separately (``lower_x`` / ``lower_case``) as a 规范性 (conformity) finding.
They never strip whitespace: ``" 1101..."`` is not well formed.

Errors: the check-character functions raise :class:`IdentifierError` (a :class:`ValueError` and a
:class:`govdx.GovdxError`) for a malformed argument; the validators never raise on values.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from govdx._errors import GovdxError

if TYPE_CHECKING:
    from quality._regions import RegionCodes

__all__ = [
    "RESIDENT_ID_WEIGHTS",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "IdentifierError",
    "is_valid_resident_id",
    "is_valid_uscc",
    "org_code_check_char",
    "org_code_check_chars",
    "resident_id_birth_date",
    "resident_id_check_char",
    "resident_id_check_chars",
    "resident_id_checks",
    "resident_id_region",
    "upgrade_legacy_resident_id",
    "uscc_check_char",
    "uscc_check_chars",
    "uscc_checks",
    "uscc_region",
]


class IdentifierError(GovdxError, ValueError):
    """An identifier argument is malformed (标识符格式错误), e.g. a 16-character ``first17``."""


# --- constants of the standards ---------------------------------------------------------------
RESIDENT_ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
"""GB 11643-1999 / ISO 7064 MOD 11-2 weights ``2^(17-i) mod 11`` of positions 1..17."""
_RID_CHECK = "10X98765432"

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""GB 32100-2015 character set (31 characters; I, O, Z, S, V are not used)."""
USCC_WEIGHTS: tuple[int, ...] = tuple(pow(3, i, 31) for i in range(17))
"""GB 32100-2015 weights ``3^i mod 31`` of positions 1..17."""
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714-1997
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # values 0..35 in GB 11714

_RID18 = re.compile(r"[0-9]{17}[0-9Xx]")
_RID15 = re.compile(r"[0-9]{15}")
_DIGITS17 = re.compile(r"[0-9]{17}")
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
_ORG_VALUE = {c: i for i, c in enumerate(_ORG_ALPHABET)}

# numpy lookup tables (byte → value, -1 for characters outside the set)
_USCC_LUT = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_LUT[ord(_c)] = _i
_ORG_LUT = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(_ORG_ALPHABET):
    _ORG_LUT[ord(_c)] = _i
_USCC_BYTES = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
_RID_CHECK_BYTES = np.frombuffer(_RID_CHECK.encode(), dtype=np.uint8)
_ORG_CHECK_BYTES = np.frombuffer(b"0123456789X0", dtype=np.uint8)  # index = 11 − Σ mod 11
_RID_W = np.array(RESIDENT_ID_WEIGHTS, dtype=np.int64)
_USCC_W = np.array(USCC_WEIGHTS, dtype=np.int64)
_ORG_W = np.array(_ORG_WEIGHTS, dtype=np.int64)
_ILLEGAL_USCC = np.frombuffer(b"IOZSV", dtype=np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


# --- resident identity number (scalar) ---------------------------------------------------------
def resident_id_check_char(first17: str) -> str:
    """Check character of a resident identity number (GB 11643-1999, ISO 7064 MOD 11-2).

    Args:
        first17: the first 17 characters, ASCII digits.

    Returns:
        One of ``0123456789X``.

    Raises:
        IdentifierError: ``first17`` is not exactly 17 ASCII digits.

    Examples:
        >>> resident_id_check_char("11010519491231002")
        'X'
    """
    if not isinstance(first17, str) or not _DIGITS17.fullmatch(first17):
        raise IdentifierError(
            f"resident ID (公民身份号码) body must be 17 ASCII digits, got {first17!r}"
        )
    total = sum(int(c) * w for c, w in zip(first17, RESIDENT_ID_WEIGHTS, strict=True))
    return _RID_CHECK[total % 11]


def _date_or_none(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _birth_date(s: str) -> date | None:
    if _RID18.fullmatch(s):
        return _date_or_none(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    if _RID15.fullmatch(s):
        return _date_or_none(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))
    return None


def is_valid_resident_id(s: object) -> bool:
    """Whether ``s`` is a valid 18-character resident identity number (GB 11643-1999).

    Valid means: 17 ASCII digits and a check character ``0-9``/``X`` (``x`` accepted, see the
    module notes), the MOD 11-2 check character matches, and positions 7-14 are a real calendar
    date ``YYYYMMDD`` (year 0001-9999; plausibility of the age is a quality rule, not this).
    The legacy 15-digit number is *not* valid here (see :func:`resident_id_checks`).

    Args:
        s: any value; non-strings are invalid.

    Returns:
        ``True`` or ``False``; never raises.

    Examples:
        >>> is_valid_resident_id("11010519491231002X")
        True
        >>> is_valid_resident_id("110105194912310021")
        False
    """
    if not isinstance(s, str) or not _RID18.fullmatch(s):
        return False
    if resident_id_check_char(s[:17]) != s[17].upper():
        return False
    return _birth_date(s) is not None


def resident_id_birth_date(s: str) -> date:
    """Birth date encoded in a resident identity number (18 digits, or the legacy 15 as 19YYMMDD).

    The check character is not verified here (use :func:`is_valid_resident_id`).

    Raises:
        IdentifierError: not an 18-/15-character number, or the date is not a calendar date.

    Examples:
        >>> resident_id_birth_date("11010519491231002X")
        datetime.date(1949, 12, 31)
    """
    if not isinstance(s, str) or not (_RID18.fullmatch(s) or _RID15.fullmatch(s)):
        raise IdentifierError(f"not a resident ID (公民身份号码): {s!r}")
    born = _birth_date(s)
    if born is None:
        raise IdentifierError(f"resident ID {s!r} holds no valid birth date (出生日期)")
    return born


def resident_id_region(s: str) -> str:
    """The 6-digit GB/T 2260 region code (行政区划代码) at positions 1-6 of a resident ID.

    Raises:
        IdentifierError: not an 18-/15-character resident identity number.

    Examples:
        >>> resident_id_region("11010519491231002X")
        '110105'
    """
    if not isinstance(s, str) or not (_RID18.fullmatch(s) or _RID15.fullmatch(s)):
        raise IdentifierError(f"not a resident ID (公民身份号码): {s!r}")
    return s[:6]


def upgrade_legacy_resident_id(s15: str) -> str:
    """Convert a legacy 15-digit number to the 18-character form (insert ``19``, add the check).

    Raises:
        IdentifierError: ``s15`` is not 15 ASCII digits.

    Examples:
        >>> upgrade_legacy_resident_id("110105491231002")
        '11010519491231002X'
    """
    if not isinstance(s15, str) or not _RID15.fullmatch(s15):
        raise IdentifierError(f"legacy resident ID must be 15 ASCII digits, got {s15!r}")
    body = s15[:6] + "19" + s15[6:]
    return body + resident_id_check_char(body)


# --- unified social credit code (scalar) -------------------------------------------------------
def org_code_check_char(first8: str) -> str:
    """Check character of an organisation code (组织机构代码, GB 11714-1997).

    Args:
        first8: the 8-character body, ASCII digits and upper-case letters (A=10 … Z=35).

    Returns:
        ``0``-``9`` or ``X``.

    Raises:
        IdentifierError: ``first8`` is not 8 characters of ``0-9A-Z``.

    Examples:
        >>> org_code_check_char("M000100Y")
        '4'
    """
    if not isinstance(first8, str) or len(first8) != 8 or any(c not in _ORG_VALUE for c in first8):
        raise IdentifierError(
            f"organisation code (组织机构代码) body must be 8 characters 0-9/A-Z, got {first8!r}"
        )
    total = sum(_ORG_VALUE[c] * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    return "0123456789X0"[11 - total % 11]


def uscc_check_char(first17: str) -> str:
    """Check character of a unified social credit code (GB 32100-2015, MOD 31).

    Args:
        first17: the first 17 characters, from :data:`USCC_ALPHABET` (upper case).

    Returns:
        One character of :data:`USCC_ALPHABET`.

    Raises:
        IdentifierError: wrong length or a character outside the 31-character set.

    Examples:
        >>> uscc_check_char("91350100M000100Y4")
        '3'
    """
    if (
        not isinstance(first17, str)
        or len(first17) != 17
        or any(c not in _USCC_VALUE for c in first17)
    ):
        raise IdentifierError(
            "USCC (统一社会信用代码) body must be 17 characters of "
            f"{USCC_ALPHABET}, got {first17!r}"
        )
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(s: object, *, check_org_code: bool = True) -> bool:
    """Whether ``s`` is a valid unified social credit code (GB 32100-2015).

    Valid means: 18 characters, all (after upper-casing) in :data:`USCC_ALPHABET`, the MOD 31
    check character matches, and (unless ``check_org_code=False``) positions 9-17 are an
    organisation code whose own GB 11714 check character matches.

    Args:
        s: any value; non-strings are invalid.
        check_org_code: also verify the embedded organisation code's check character.

    Returns:
        ``True`` or ``False``; never raises.

    Examples:
        >>> is_valid_uscc("91350100M000100Y43")
        True
        >>> is_valid_uscc("91350100M000100Y44")
        False
    """
    if not isinstance(s, str) or len(s) != 18:
        return False
    up = s.upper()
    if any(c not in _USCC_VALUE for c in up):
        return False
    if uscc_check_char(up[:17]) != up[17]:
        return False
    return not check_org_code or org_code_check_char(up[8:16]) == up[16]


def uscc_region(s: str) -> str:
    """The 6-character region code (登记管理机关行政区划码) at positions 3-8 of a USCC.

    Raises:
        IdentifierError: ``s`` is not 18 characters of the USCC set.

    Examples:
        >>> uscc_region("91350100M000100Y43")
        '350100'
    """
    if not isinstance(s, str) or len(s) != 18 or any(c not in _USCC_VALUE for c in s.upper()):
        raise IdentifierError(f"not a USCC (统一社会信用代码): {s!r}")
    return s[2:8]


# --- vectorized helpers ------------------------------------------------------------------------
def _string_array(values: pa.Array | pa.ChunkedArray, what: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if not isinstance(values, pa.Array):
        raise IdentifierError(f"{what}: expected a pyarrow Array of strings, got {type(values)}")
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_string_view(t):
        values = values.cast(pa.large_string())
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise IdentifierError(f"{what}: expected a string array, got {t}")
    return values


def _valid_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _fixed_width(arr: pa.Array, width: int, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of byte length ``width`` (``bool[n]``) and their bytes (``uint8[k × width]``)."""
    n = len(arr)
    bufs = arr.buffers()
    odt = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=odt)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    sel = valid & (np.diff(offsets) == width)
    starts = offsets[:-1][sel]
    matrix = data[starts[:, None] + np.arange(width, dtype=np.int64)]
    return sel, matrix


def _strings_from_matrix(matrix: np.ndarray) -> pa.Array:
    """A ``pa.string()`` array from a ``uint8[n × width]`` matrix of ASCII bytes."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data.tobytes())]
    )


def _scatter(n: int, sel: np.ndarray, values: np.ndarray, fill: int | bool = False) -> np.ndarray:
    out = np.full(n, fill, dtype=values.dtype)
    out[sel] = values
    return out


def _real_date(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    mm = np.clip(m, 0, 12)
    dim = _DAYS_IN_MONTH[mm] + ((mm == 2) & leap)
    return (y >= 1) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's days_from_civil)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _to_int(digits: np.ndarray) -> np.ndarray:
    """Integer value of each row of a decimal-digit matrix ``int64[n × k]``."""
    k = digits.shape[1]
    return digits @ (10 ** np.arange(k - 1, -1, -1, dtype=np.int64))


def _bool(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.bool_(), mask=None if valid.all() else ~valid)


# --- resident identity number (vectorized) -----------------------------------------------------
def resident_id_check_chars(first17: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorized :func:`resident_id_check_char` over a string array.

    Args:
        first17: ``pa.Array[string]`` of 17-digit bodies (nulls allowed).

    Returns:
        ``pa.Array[string]`` of one character each; null where the input is null.

    Raises:
        IdentifierError: a non-null value is not 17 ASCII digits.
    """
    arr = _string_array(first17, "resident_id_check_chars")
    valid = _valid_mask(arr)
    sel, m = _fixed_width(arr, 17, valid)
    digits = m.astype(np.int64) - 48
    bad = ~sel & valid
    if bad.any() or ((digits < 0) | (digits > 9)).any():
        raise IdentifierError("resident_id_check_chars: every value must be 17 ASCII digits")
    out = np.zeros((len(arr), 1), dtype=np.uint8)
    out[sel, 0] = _RID_CHECK_BYTES[(digits @ _RID_W) % 11]
    res = _strings_from_matrix(out)
    return res if valid.all() else pc.if_else(pa.array(valid), res, pa.scalar(None, pa.string()))


def resident_id_checks(
    values: pa.Array | pa.ChunkedArray, *, regions: RegionCodes | None = None
) -> pa.Table:
    """Vectorized checks of resident identity numbers (GB 11643-1999), one row per value.

    Args:
        values: ``pa.Array[string | large_string]`` (a ChunkedArray is combined), e.g. 1,000,000
            values; nulls give null in every output column.
        regions: optional :class:`quality.RegionCodes`; adds ``region_known`` (the region code
            was ever valid in GB/T 2260, historical codes included).

    Returns:
        ``pyarrow.Table[len(values) × 9]`` (10 with ``regions``):

        * ``well_formed`` bool — 17 ASCII digits + ``0-9``/``X``/``x`` (18 characters);
        * ``check_ok`` bool — well formed and the MOD 11-2 check character matches after
          upper-casing;
        * ``birth_date_ok`` bool — positions 7-14 (legacy: ``19`` + 7-12) form a calendar date;
        * ``is_legacy_15`` bool — a 15-digit legacy number (GB 11643-1989; never ``valid``);
        * ``lower_x`` bool — the check character is written ``x``;
        * ``valid`` bool — ``well_formed & check_ok & birth_date_ok`` (= :func:`is_valid_resident_id`);
        * ``birth_date`` date32 — null unless ``birth_date_ok``;
        * ``region`` string — positions 1-6, null unless well formed or legacy;
        * ``sex`` string — ``M``/``F`` from the sequence code parity, null when not well formed.

    Raises:
        IdentifierError: ``values`` is not a string array.
    """
    arr = _string_array(values, "resident_id_checks")
    n = len(arr)
    valid = _valid_mask(arr)

    sel18, m18 = _fixed_width(arr, 18, valid)
    d18 = m18.astype(np.int64) - 48
    digits17 = ((d18[:, :17] >= 0) & (d18[:, :17] <= 9)).all(axis=1)
    last = m18[:, 17]
    lower = last == ord("x")
    last_ok = ((last >= 48) & (last <= 57)) | (last == ord("X")) | lower
    wf = digits17 & last_ok
    body = np.where(wf[:, None], d18[:, :17], 0)
    expected = _RID_CHECK_BYTES[(body @ _RID_W) % 11]
    check = wf & (np.where(lower, ord("X"), last) == expected)
    ymd = _to_int(body[:, 6:14])
    y18, mo18, dd18 = ymd // 10000, ymd // 100 % 100, ymd % 100
    date18 = wf & _real_date(y18, mo18, dd18)
    sex18 = body[:, 16] % 2 == 1

    sel15, m15 = _fixed_width(arr, 15, valid)
    d15 = m15.astype(np.int64) - 48
    leg = ((d15 >= 0) & (d15 <= 9)).all(axis=1)
    body15 = np.where(leg[:, None], d15, 0)
    ymd15 = _to_int(body15[:, 6:12])
    y15, mo15, dd15 = 1900 + ymd15 // 10000, ymd15 // 100 % 100, ymd15 % 100
    date15 = leg & _real_date(y15, mo15, dd15)
    sex15 = body15[:, 14] % 2 == 1

    well_formed = _scatter(n, sel18, wf)
    legacy = _scatter(n, sel15, leg)
    birth_ok = _scatter(n, sel18, date18) | _scatter(n, sel15, date15)
    check_ok = _scatter(n, sel18, check)
    days = _scatter(n, sel18, _days_from_civil(y18, mo18, dd18), 0) + _scatter(
        n, sel15, _days_from_civil(y15, mo15, dd15), 0
    )
    male = _scatter(n, sel18, sex18) | _scatter(n, sel15, sex15)
    has_region = well_formed | legacy

    birth = pa.array(days.astype(np.int32), type=pa.int32(), mask=~birth_ok).cast(pa.date32())
    region = pc.if_else(
        pa.array(has_region),
        pc.utf8_slice_codeunits(arr, 0, 6).cast(pa.string()),
        pa.scalar(None, pa.string()),
    )
    sex = pa.array(np.where(male, "M", "F"), type=pa.string(), mask=~has_region)
    cols = {
        "well_formed": _bool(well_formed, valid),
        "check_ok": _bool(check_ok, valid),
        "birth_date_ok": _bool(birth_ok, valid),
        "is_legacy_15": _bool(legacy, valid),
        "lower_x": _bool(_scatter(n, sel18, wf & lower), valid),
        "valid": _bool(well_formed & check_ok & birth_ok, valid),
        "birth_date": birth,
        "region": region,
        "sex": sex,
    }
    if regions is not None:
        known = pc.is_in(region, value_set=pa.array(sorted(regions.all_codes), pa.string()))
        cols["region_known"] = pc.if_else(pa.array(has_region), known, pa.scalar(False))
        cols["region_known"] = pc.if_else(
            pa.array(valid), cols["region_known"], pa.scalar(None, pa.bool_())
        )
    return pa.table(cols)


# --- unified social credit code (vectorized) ---------------------------------------------------
def _upper_ascii(m: np.ndarray) -> np.ndarray:
    return np.where((m >= ord("a")) & (m <= ord("z")), m - 32, m).astype(np.uint8)


def _org_check_bytes(vals8: np.ndarray) -> np.ndarray:
    """GB 11714 check bytes of ``int64[n × 8]`` character values (0..35)."""
    return _ORG_CHECK_BYTES[11 - (vals8 @ _ORG_W) % 11]


def org_code_check_chars(first8: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorized :func:`org_code_check_char` (GB 11714-1997) over a string array.

    Args:
        first8: ``pa.Array[string]`` of 8-character bodies of ``0-9A-Z`` (nulls allowed).

    Returns:
        ``pa.Array[string]`` of one character each (``0-9``/``X``); null where the input is null.

    Raises:
        IdentifierError: a non-null value is not 8 characters of ``0-9A-Z``.
    """
    arr = _string_array(first8, "org_code_check_chars")
    valid = _valid_mask(arr)
    sel, m = _fixed_width(arr, 8, valid)
    vals = _ORG_LUT[m].astype(np.int64)
    if (~sel & valid).any() or (vals < 0).any():
        raise IdentifierError("org_code_check_chars: every value must be 8 characters 0-9/A-Z")
    out = np.zeros((len(arr), 1), dtype=np.uint8)
    out[sel, 0] = _org_check_bytes(vals)
    res = _strings_from_matrix(out)
    return res if valid.all() else pc.if_else(pa.array(valid), res, pa.scalar(None, pa.string()))


def uscc_check_chars(first17: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorized :func:`uscc_check_char` (GB 32100-2015) over a string array.

    Args:
        first17: ``pa.Array[string]`` of 17-character bodies over :data:`USCC_ALPHABET`.

    Returns:
        ``pa.Array[string]`` of one character each; null where the input is null.

    Raises:
        IdentifierError: a non-null value is not 17 characters of the USCC set.
    """
    arr = _string_array(first17, "uscc_check_chars")
    valid = _valid_mask(arr)
    sel, m = _fixed_width(arr, 17, valid)
    vals = _USCC_LUT[m].astype(np.int64)
    if (~sel & valid).any() or (vals < 0).any():
        raise IdentifierError(
            f"uscc_check_chars: every value must be 17 characters of {USCC_ALPHABET}"
        )
    out = np.zeros((len(arr), 1), dtype=np.uint8)
    out[sel, 0] = _USCC_BYTES[(31 - (vals @ _USCC_W) % 31) % 31]
    res = _strings_from_matrix(out)
    return res if valid.all() else pc.if_else(pa.array(valid), res, pa.scalar(None, pa.string()))


def uscc_checks(
    values: pa.Array | pa.ChunkedArray, *, regions: RegionCodes | None = None
) -> pa.Table:
    """Vectorized checks of unified social credit codes (GB 32100-2015), one row per value.

    Args:
        values: ``pa.Array[string | large_string]`` (a ChunkedArray is combined); nulls give
            null in every output column.
        regions: optional :class:`quality.RegionCodes`; adds ``region_known`` (positions 3-8 were
            ever a GB/T 2260 code). National registrations (``100000``) are not in that list.

    Returns:
        ``pyarrow.Table[len(values) × 7]`` (8 with ``regions``):

        * ``well_formed`` bool — 18 characters, all in :data:`USCC_ALPHABET` after upper-casing;
        * ``check_ok`` bool — well formed and the MOD 31 check character matches;
        * ``org_code_ok`` bool — well formed and positions 9-17 carry a valid GB 11714 check;
        * ``illegal_char`` bool — holds one of the letters I, O, Z, S, V (either case);
        * ``lower_case`` bool — holds a lower-case ASCII letter;
        * ``valid`` bool — ``well_formed & check_ok & org_code_ok`` (= :func:`is_valid_uscc`);
        * ``region`` string — positions 3-8, null unless well formed.

    Raises:
        IdentifierError: ``values`` is not a string array.
    """
    arr = _string_array(values, "uscc_checks")
    n = len(arr)
    valid = _valid_mask(arr)
    sel, m = _fixed_width(arr, 18, valid)
    up = _upper_ascii(m)
    vals = _USCC_LUT[up].astype(np.int64)
    wf = (vals >= 0).all(axis=1)
    v = np.where(wf[:, None], vals, 0)
    expected = (31 - (v[:, :17] @ _USCC_W) % 31) % 31
    check = wf & (v[:, 17] == expected)
    org_vals = np.where(wf[:, None], _ORG_LUT[up[:, 8:16]].astype(np.int64), 0)
    org_ok = wf & (up[:, 16] == _org_check_bytes(org_vals))
    illegal = np.isin(up, _ILLEGAL_USCC).any(axis=1)
    lower = ((m >= ord("a")) & (m <= ord("z"))).any(axis=1)

    # values of other lengths may still hold an illegal or lower-case letter
    other = valid & ~sel
    illegal_all = _scatter(n, sel, illegal)
    lower_all = _scatter(n, sel, lower)
    if other.any():
        rest = arr.filter(pa.array(other))
        illegal_all[other] = pc.match_substring_regex(rest, "[IOZSViozsv]").to_numpy(
            zero_copy_only=False
        )
        lower_all[other] = pc.match_substring_regex(rest, "[a-z]").to_numpy(zero_copy_only=False)

    well_formed = _scatter(n, sel, wf)
    check_ok = _scatter(n, sel, check)
    org_code_ok = _scatter(n, sel, org_ok)
    region = pc.if_else(
        pa.array(well_formed),
        pc.utf8_slice_codeunits(arr, 2, 8).cast(pa.string()),
        pa.scalar(None, pa.string()),
    )
    cols = {
        "well_formed": _bool(well_formed, valid),
        "check_ok": _bool(check_ok, valid),
        "org_code_ok": _bool(org_code_ok, valid),
        "illegal_char": _bool(illegal_all, valid),
        "lower_case": _bool(lower_all, valid),
        "valid": _bool(well_formed & check_ok & org_code_ok, valid),
        "region": region,
    }
    if regions is not None:
        known = pc.is_in(region, value_set=pa.array(sorted(regions.all_codes), pa.string()))
        known = pc.if_else(pa.array(well_formed), known, pa.scalar(False))
        cols["region_known"] = pc.if_else(pa.array(valid), known, pa.scalar(None, pa.bool_()))
    return pa.table(cols)
