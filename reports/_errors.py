"""Errors of the reports package (分析报告错误).

Tree::

    govdx.DefinitionError
    └── ReportDefinitionError    a report request is wrong: unknown report or format, a malformed
                                 --period (names the bound), a file name without a path
    govdx.GovdxRuntimeError
    └── ReportError              a report could not be computed or written (catalog DB failure,
                                 unreadable table version — names the dataset and version)

SQLAlchemy, deltalake, pyarrow and openpyxl errors are translated with ``raise ... from exc``.
"""

from __future__ import annotations

from govdx._errors import DefinitionError, GovdxRuntimeError


class ReportDefinitionError(DefinitionError):
    """A report request is invalid (报告参数错误)."""


class ReportError(GovdxRuntimeError):
    """A report could not be computed or written (报告生成失败)."""
