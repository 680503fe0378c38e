"""Errors of the catalog package (目录与血缘错误).

Tree::

    govdx.GovdxRuntimeError
    └── CatalogError             the catalog DB refused or failed an operation (duplicate
        │                        version, bad digest, migration failure, malformed lineage event)
        └── DatasetNotFound      no catalog entry (目录条目) has the given resource code

SQLAlchemy and Alembic errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from govdx._errors import GovdxRuntimeError


class CatalogError(GovdxRuntimeError):
    """The catalog DB (数据资源目录库) refused or failed an operation."""


class DatasetNotFound(CatalogError):
    """No catalog entry has this resource code (信息资源代码).

    Attributes:
        code: the code that was looked up.
    """

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(
            f"catalog entry {code!r} not found (信息资源目录中无此资源代码); "
            "see `govdx catalog list`"
        )
