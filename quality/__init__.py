"""Data quality (数据质量): identifier checks for Chinese data elements and the division list.

- Resident identity number (公民身份号码, GB 11643-1999, ISO 7064 MOD 11-2 check character);
- unified social credit code (统一社会信用代码, GB 32100-2015, MOD 31) with the embedded
  organisation code (GB 11714-1997);
- administrative division codes (行政区划代码, GB/T 2260) with their history, from the 民政部
  list shipped in ``govdx/data/public``.

Scalar functions for single values, vectorized ``*_checks`` over Arrow arrays for columns.

On top of them, the quality stage of the pipeline (GB/T 36344-2018 dimensions):

- :func:`check_contract` checks a contract's ``quality`` section at load (steward expectations
  in Great Expectations 1.x names and arguments, per-field options, consistency rules);
- :func:`build_suite` / :func:`check_table` build the contract's GX expectation suite and run it
  on a typed Arrow table: rows to quarantine (rule, dimension, reason), findings, and
  :class:`QualityScores` (pass rate per dimension, per-rule counts, masked examples);
- :func:`record_quality` / :func:`quality_history` store scores per dataset version in the
  catalog (table ``quality_results``); :func:`build_report` / :func:`render_html` report them.

Errors::

    IdentifierError (GovdxError, ValueError)   a malformed identifier given to a scalar function
    DivisionCodesError (GovdxRuntimeError)     the division list cannot be read (names row/column)
"""

from quality._check import (
    REJECT_SCHEMA,
    QualityOutcome,
    QualityScores,
    RuleResult,
    build_suite,
    check_table,
    prior_reject_rules,
)
from quality._dimensions import Dimension, dimension_of
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
from quality._report import build_report, render_html, render_json, render_table
from quality._rules import Rule, contract_rules
from quality._spec import QualitySpec, check_contract, quality_spec
from quality._store import QualityResult, quality_history, record_quality

__all__ = [
    "DEFAULT_DIVISION_CODES_PATH",
    "REJECT_SCHEMA",
    "RESIDENT_ID_WEIGHTS",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "Dimension",
    "DivisionCodesError",
    "DivisionPeriod",
    "IdentifierError",
    "QualityOutcome",
    "QualityResult",
    "QualityScores",
    "QualitySpec",
    "RegionCodes",
    "Rule",
    "RuleResult",
    "build_report",
    "build_suite",
    "check_contract",
    "check_table",
    "contract_rules",
    "dimension_of",
    "division_codes",
    "is_valid_resident_id",
    "is_valid_uscc",
    "org_code_check_char",
    "org_code_check_chars",
    "prior_reject_rules",
    "quality_history",
    "quality_spec",
    "record_quality",
    "render_html",
    "render_json",
    "render_table",
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
