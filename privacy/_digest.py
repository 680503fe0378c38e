"""SM3 digests (GB/T 32905-2016, 密码杂凑算法) through OpenSSL."""

from __future__ import annotations

import hashlib
from os import PathLike

from privacy._errors import PrivacyError

__all__ = ["sm3_file", "sm3_hex"]


def _sm3():
    try:
        return hashlib.new("sm3")
    except ValueError as exc:  # OpenSSL built without SM3
        raise PrivacyError(
            "this OpenSSL has no SM3 (SM3 杂凑算法不可用); install an OpenSSL 3 build with SM3"
        ) from exc


def sm3_hex(data: bytes) -> str:
    """SM3 digest of ``data`` as 64 lowercase hex chars (SM3 杂凑值).

    Args:
        data: the message, bytes (any length).

    Returns:
        str of 64 hex characters (256-bit digest).

    Raises:
        PrivacyError: OpenSSL lacks SM3.

    Source: GB/T 32905-2016; OpenSSL's ``sm3`` through :mod:`hashlib`.

    Examples:
        >>> sm3_hex(b"abc")
        '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0'
    """
    h = _sm3()
    h.update(data)
    return h.hexdigest()


def sm3_file(path: str | PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SM3 digest of a file, read in chunks of ``chunk_bytes`` (流式计算文件 SM3).

    Args:
        path: the file.
        chunk_bytes: read size in bytes (default 1 MiB); memory use stays O(chunk_bytes).

    Returns:
        str of 64 hex characters.

    Raises:
        PrivacyError: the file cannot be read (message names it) or OpenSSL lacks SM3.
        ValueError: ``chunk_bytes`` < 1.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    h = _sm3()
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    except OSError as exc:
        raise PrivacyError(f"cannot read {path!s} for its SM3 digest: {exc}") from exc
    return h.hexdigest()
