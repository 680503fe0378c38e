"""Import Great Expectations safely in any process (no analytics, no early exit).

GX imports ``pyspark.sql.connect``, whose import calls ``sys.exit(0)`` when the ``__main__``
module has neither ``__spec__`` nor ``__file__`` (pyspark assumes it runs doctests) — the case in
Airflow's DAG processor and ``python -c``. :func:`import_gx` gives ``__main__`` a placeholder
``__file__`` for the duration of the import, and turns GX analytics off.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["import_gx"]


def import_gx() -> ModuleType:
    """Import and return ``great_expectations`` (analytics off, safe under any ``__main__``)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if "great_expectations" in sys.modules:
        return sys.modules["great_expectations"]
    main = sys.modules.get("__main__")
    patch = (
        main is not None
        and getattr(main, "__spec__", None) is None
        and not hasattr(main, "__file__")
    )
    if patch:
        main.__file__ = "<govdx>"  # type: ignore[union-attr]
    try:
        return importlib.import_module("great_expectations")
    finally:
        if patch:
            del main.__file__  # type: ignore[union-attr]
