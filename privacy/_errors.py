"""Errors of the privacy package (隐私计算/密码模块的错误).

Tree::

    govdx.GovdxError
    ├── govdx.GovdxRuntimeError
    │   └── PrivacyError                 root of this package
    │       ├── DecryptionError          a cell failed authentication (密文认证失败): flipped bit,
    │       │                            swapped or reordered cell, wrong dataset/column/key
    │       └── KeyManagementError       a key could not be created, read, wrapped or unwrapped
    │           └── KeyConfigError       the key configuration is wrong (also a DefinitionError)
    └── govdx.DefinitionError
        └── KeyConfigError               (same class: bad KEK file mode, bad hex, bad dataset code)

Third-party errors (``cryptography.exceptions.InvalidTag``, ``OSError``, ``json`` errors) are
translated with ``raise ... from exc``.
"""

from __future__ import annotations

from govdx._errors import DefinitionError, GovdxRuntimeError


class PrivacyError(GovdxRuntimeError):
    """Root of the errors raised by :mod:`privacy` (隐私模块错误)."""


class DecryptionError(PrivacyError):
    """Ciphertext failed authentication or is malformed (解密失败/密文被篡改).

    Raised instead of ever returning garbage: a flipped bit, a cell moved to another row, column
    or dataset, a wrong data key, or a truncated cell.

    Attributes:
        rows: indices (0-based, in the array given to ``decrypt_column``) of the offending cells,
            at most 10 of them; empty when the error concerns the whole array.
    """

    def __init__(self, message: str, *, rows: list[int] | None = None) -> None:
        self.rows = list(rows or [])
        super().__init__(message)


class KeyManagementError(PrivacyError):
    """A key could not be created, stored, wrapped or unwrapped (密钥管理错误)."""


class KeyConfigError(KeyManagementError, DefinitionError):
    """The key configuration is invalid (密钥配置错误): KEK file readable by others, bad hex,
    missing KEK in production, invalid dataset code. Caught both as a
    :class:`KeyManagementError` and as a :class:`govdx.DefinitionError`."""
