"""Whole-file encryption at rest for the landing zone (落地区): SM4-GCM, streamed.

Raw department files hold plaintext of sensitive fields, so a landed file is stored encrypted
under the dataset's data key (DEK); only a pipeline run decrypts it, in memory.

File format (version 1), all integers big-endian::

    magic  b"GDXF"          4 bytes
    version 0x01            1 byte
    key_id_len              1 byte, then key_id (ASCII)
    nonce                   12 bytes, random per file (os.urandom)
    ciphertext              SM4-GCM over the whole plaintext, streamed in 1 MiB chunks
    tag                     16 bytes

AAD = b"govdx-landing/v1|" + dataset code + b"|" + key_id + b"|" + SM3 hex digest of the
plaintext: a landed file cannot be moved to another dataset or digest name unnoticed.
SM4: GB/T 32907-2016; GCM: NIST SP 800-38D, both through OpenSSL (``cryptography``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privacy._errors import DecryptionError

if TYPE_CHECKING:
    from privacy._keys import DataKey, Keyring

_MAGIC = b"GDXF"
_VERSION = 1
_CHUNK = 1 << 20
_TAG = 16


def _aad(dataset: str, key_id: str, digest: str) -> bytes:
    return b"|".join([b"govdx-landing/v1", dataset.encode(), key_id.encode(), digest.encode()])


def encrypt_file(src: Path, dst: Path, *, key: DataKey, digest: str) -> int:
    """Encrypt ``src`` into ``dst`` (written to a temporary name, then renamed atomically).

    Args:
        src: plaintext file.
        dst: destination path; its parent must exist.
        key: the dataset's current data key (DEK, 128-bit SM4).
        digest: SM3 hex digest of the plaintext, bound into the AAD.

    Returns:
        Bytes written to ``dst``.
    """
    nonce = os.urandom(12)
    enc = Cipher(algorithms.SM4(key.key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(_aad(key.dataset, key.key_id, digest))
    kid = key.key_id.encode("ascii")
    tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
    written = 0
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        head = _MAGIC + bytes([_VERSION, len(kid)]) + kid + nonce
        fout.write(head)
        written += len(head)
        while chunk := fin.read(_CHUNK):
            out = enc.update(chunk)
            fout.write(out)
            written += len(out)
        fout.write(enc.finalize())
        fout.write(enc.tag)
        written += _TAG
        fout.flush()
        os.fsync(fout.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, dst)
    return written


def decrypt_file(path: Path, *, keyring: Keyring, dataset: str, digest: str) -> bytes:
    """Decrypt a landed file into memory.

    Args:
        path: a file written by :func:`encrypt_file`.
        keyring: resolves the data key by the key id stored in the header.
        dataset: the dataset code the file was landed for.
        digest: the SM3 hex digest of the plaintext (the landed file's name).

    Returns:
        The plaintext bytes.

    Raises:
        DecryptionError: not a govdx landed file, wrong dataset/digest, wrong key or tampered.
    """
    data = path.read_bytes()
    if len(data) < 6 + 12 + _TAG or data[:4] != _MAGIC or data[4] != _VERSION:
        raise DecryptionError(f"{path}: not a govdx landed file (bad magic or version)")
    kid_len = data[5]
    key_id = data[6 : 6 + kid_len].decode("ascii")
    nonce = data[6 + kid_len : 18 + kid_len]
    body, tag = data[18 + kid_len : -_TAG], data[-_TAG:]
    key = keyring.get(dataset, key_id)
    dec = Cipher(algorithms.SM4(key.key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(_aad(dataset, key_id, digest))
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag as exc:
        raise DecryptionError(
            f"{path}: authentication failed (wrong key, dataset or digest, or tampered file)"
        ) from exc
