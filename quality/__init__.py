"""Data quality (数据质量): identifier checks for Chinese data elements and the division list.

- Resident identity number (公民身份号码, GB 11643-1999, ISO 7064 MOD 11-2 check character);
- unified social credit code (统一社会信用代码, GB 32100-2015, MOD 31) with the embedded
  organisation code (GB 11714-1997);
- administrative division codes (行政区划代码, GB/T 2260) with their history, from the 民政部
  list shipped in ``govdx/data/public``.

Scalar functions for single values, vectorized ``*_checks`` over Arrow arrays for columns.

Errors::

    IdentifierError (GovdxError, ValueError)   a malformed identifier given to a scalar function
    DivisionCodesError (GovdxRuntimeError)     the division list cannot be read (names row/column)
"""

from quality._identifiers import (
    RESIDENT_ID_WEIGHTS,
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
from quality._regions import (
    DEFAULT_DIVISION_CODES_PATH,
    DivisionCodesError,
    DivisionPeriod,
    RegionCodes,
    division_codes,
)

__all__ = [
    "DEFAULT_DIVISION_CODES_PATH",
    "RESIDENT_ID_WEIGHTS",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "DivisionCodesError",
    "DivisionPeriod",
    "IdentifierError",
    "RegionCodes",
    "division_codes",
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
