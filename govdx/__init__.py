"""govdx — a privacy-preserving government data exchange (政务数据共享交换, 数据可用不可见).

The core package holds what every part shares: settings and home layout, dataset contracts and
the error root. The parts live beside it: ``pipelines`` (ingest), ``catalog`` (catalog, lineage),
``quality``, ``privacy``, ``sandbox`` and ``api``.
"""

from govdx._contract import (
    GRADE_ZH,
    OPEN_TYPE_ZH,
    SHARE_TYPE_ZH,
    Contract,
    ContractField,
    Department,
    FieldType,
    Grade,
    Open,
    OpenType,
    PersonalInfo,
    Quality,
    Share,
    ShareType,
    Source,
    load_contract,
)
from govdx._errors import ContractError, DefinitionError, GovdxError, GovdxRuntimeError
from govdx._settings import Settings

__version__ = "0.1.0"

__all__ = [
    "GRADE_ZH",
    "OPEN_TYPE_ZH",
    "SHARE_TYPE_ZH",
    "Contract",
    "ContractError",
    "ContractField",
    "DefinitionError",
    "Department",
    "FieldType",
    "GovdxError",
    "GovdxRuntimeError",
    "Grade",
    "Open",
    "OpenType",
    "PersonalInfo",
    "Quality",
    "Settings",
    "Share",
    "ShareType",
    "Source",
    "__version__",
    "load_contract",
]
