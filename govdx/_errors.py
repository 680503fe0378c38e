"""The root of every error govdx raises, and the split between its two families.

Tree (each package hangs its own errors below these two)::

    GovdxError
    ├── DefinitionError          a declaration is wrong: contract, job spec, config (raised eagerly,
    │   └── ContractError        before any data moves; the message names the file and key)
    └── GovdxRuntimeError        a run failed: unreadable file, cipher failure, store failure
        └── (pipelines.IngestError, privacy.PrivacyError, catalog.CatalogError, ...)

Third-party exceptions are translated at the boundary with ``raise ... from exc`` so the cause is
kept.
"""

from __future__ import annotations


class GovdxError(Exception):
    """Root of all govdx errors (govdx 错误的根类)."""


class DefinitionError(GovdxError):
    """A declaration (contract, job spec, setting) is invalid. Raised at load time."""


class GovdxRuntimeError(GovdxError):
    """A run failed after its definition was accepted."""


class ContractError(DefinitionError):
    """A dataset contract (数据集契约) is invalid.

    Attributes:
        path: the contract file, when it came from one.
        key: dotted path of the offending key (``fields.2.type``), when known.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)
