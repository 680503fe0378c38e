"""Envelope keys (信封加密): per-dataset data keys (DEK) wrapped by a master key (KEK).

Layout under ``keys_dir`` (``Settings.keys_dir``, mode 0700)::

    kek.key                  LocalKms key file: 32 hex chars, mode 0600 (主密钥)
    deks/<dataset>.json      wrapped DEKs of one dataset, current key id (数据密钥)
    token-master.json        wrapped token master key (令牌主密钥)
    .lock                    advisory lock for read-modify-write of the JSON files

Wrapping (LocalKms): SM4-GCM (GB/T 32907-2016 in NIST SP 800-38D GCM) under the KEK with a
random 96-bit nonce; stored as ``0x01 ‖ nonce(12) ‖ ciphertext(16) ‖ tag(16)``; the AAD binds
what the key is for (``govdx/dek/v1 ‖ dataset ‖ key_id`` or ``govdx/token-master/v1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy._digest import sm3_hex
from privacy._errors import KeyConfigError, KeyManagementError

if TYPE_CHECKING:
    from govdx import Settings

__all__ = ["DataKey", "Keyring", "Kms", "LocalKms", "keyring_from_settings"]

Audit = Callable[[str, dict], None]
_DATASET_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_WRAP_VERSION = 1
_STORE_FORMAT = 1


@dataclass(frozen=True)
class DataKey:
    """A dataset's SM4 data key (数据密钥, DEK). The repr never shows the key bytes.

    Attributes:
        dataset: dataset code the key belongs to.
        key_id: identifier bound into every ciphertext (``k<n>-<8 hex>``).
        key: 16 bytes (128-bit SM4 key). Hidden from repr.
        created_at: tz-aware UTC creation time.
    """

    dataset: str
    key_id: str
    key: bytes = field(repr=False)
    created_at: datetime

    def __post_init__(self) -> None:
        if len(self.key) != 16:
            raise KeyManagementError(
                f"data key {self.key_id!r} of {self.dataset!r} must be 16 bytes, got {len(self.key)}"
            )


@runtime_checkable
class Kms(Protocol):
    """Key management service that wraps data keys under a KEK (密钥管理服务接口).

    Attributes:
        kek_id: a stable, non-secret identifier of the KEK (recorded beside each wrapped key).
    """

    kek_id: str

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``dek`` (bytes) bound to ``aad`` (bytes); returns bytes."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`; raises :class:`KeyManagementError` on any mismatch."""
        ...


class LocalKms:
    """A KMS whose KEK (主密钥) is a local 128-bit SM4 key; wraps with SM4-GCM.

    Build it with :meth:`from_file` (the home's ``keys/kek.key``) or :meth:`from_hex`
    (``GOVDX_KEK_HEX``). Losing the KEK makes every wrapped DEK, hence all encrypted data,
    unrecoverable: back it up (docs/crypto.md).

    Args:
        kek: 16 bytes.

    Raises:
        KeyConfigError: ``kek`` is not 16 bytes.
    """

    def __init__(self, kek: bytes) -> None:
        if len(kek) != 16:
            raise KeyConfigError(f"KEK must be 16 bytes (128-bit SM4 key), got {len(kek)}")
        self._kek = kek
        self.kek_id = "kek-" + sm3_hex(b"govdx/kek-id/v1\x00" + kek)[:16]

    def __repr__(self) -> str:
        return f"LocalKms(kek_id={self.kek_id!r})"

    @classmethod
    def from_hex(cls, kek_hex: str) -> LocalKms:
        """KMS from 32 hex characters (the ``GOVDX_KEK_HEX`` setting).

        Raises:
            KeyConfigError: not exactly 32 hex characters.
        """
        try:
            raw = bytes.fromhex(kek_hex.strip())
        except ValueError as exc:
            raise KeyConfigError("GOVDX_KEK_HEX is not hex (主密钥格式错误)") from exc
        if len(raw) != 16:
            raise KeyConfigError(
                f"GOVDX_KEK_HEX must be 32 hex chars (128 bit), got {len(kek_hex.strip())}"
            )
        return cls(raw)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, create: bool = False) -> LocalKms:
        """KMS from a key file holding 32 hex chars, mode 0600.

        Args:
            path: the key file (``<home>/keys/kek.key``).
            create: generate a random KEK with mode 0600 when the file is missing
                (development only).

        Raises:
            KeyConfigError: the file is missing (and ``create`` is false), its mode lets group or
                others access it (fix: ``chmod 600 <path>``), or its content is not 32 hex chars.
        """
        p = Path(path)
        if not p.exists():
            if not create:
                raise KeyConfigError(
                    f"{p}: KEK file missing (主密钥文件不存在); restore it from backup or set "
                    "GOVDX_KEK_HEX"
                )
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # created by a concurrent process: read it below
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(16) + "\n")
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            raise KeyConfigError(
                f"{p}: KEK file mode {mode:04o} lets group/others access it; run `chmod 600 {p}` "
                "(主密钥文件权限过宽)"
            )
        try:
            raw = bytes.fromhex(p.read_text(encoding="ascii").strip())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise KeyConfigError(f"{p}: cannot read a hex KEK from the file: {exc}") from exc
        if len(raw) != 16:
            raise KeyConfigError(
                f"{p}: KEK file must hold 32 hex chars (128 bit), got {2 * len(raw)}"
            )
        return cls(raw)

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        """SM4-GCM-encrypt ``dek`` under the KEK with ``aad``; returns 1+12+len(dek)+16 bytes."""
        nonce = os.urandom(12)
        enc = Cipher(algorithms.SM4(self._kek), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        ct = enc.update(dek) + enc.finalize()
        return bytes([_WRAP_VERSION]) + nonce + ct + enc.tag

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`.

        Raises:
            KeyManagementError: wrong KEK, wrong AAD, or a damaged wrapped key.
        """
        if len(wrapped) < 1 + 12 + 16 or wrapped[0] != _WRAP_VERSION:
            raise KeyManagementError("wrapped key is truncated or of an unknown version")
        nonce, ct, tag = wrapped[1:13], wrapped[13:-16], wrapped[-16:]
        dec = Cipher(algorithms.SM4(self._kek), modes.GCM(nonce, tag)).decryptor()
        dec.authenticate_additional_data(aad)
        try:
            return dec.update(ct) + dec.finalize()
        except InvalidTag as exc:
            raise KeyManagementError(
                f"cannot unwrap key with KEK {self.kek_id} (wrong KEK or damaged key file; "
                "密钥解封失败)"
            ) from exc


def _dek_aad(dataset: str, key_id: str) -> bytes:
    return b"govdx/dek/v1\x00" + dataset.encode() + b"\x00" + key_id.encode()


_TOKEN_AAD = b"govdx/token-master/v1"


def _now() -> datetime:
    return datetime.now(UTC)


class Keyring:
    """Per-dataset data keys, wrapped under a KMS and stored as JSON (密钥环).

    Args:
        keys_dir: folder of the wrapped keys (``Settings.keys_dir``); created (0700) if missing.
        kms: wraps/unwraps the keys (:class:`LocalKms` or another :class:`Kms`).
        audit: optional callback ``(event, details)`` for ``key.create``, ``key.rotate``,
            ``key.rewrap``, ``token_master.create``; details never hold key bytes.
    """

    def __init__(self, keys_dir: Path, kms: Kms, *, audit: Audit | None = None) -> None:
        self.keys_dir = Path(keys_dir)
        self.kms = kms
        self._audit = audit
        self._cache: dict[tuple[str, str], DataKey] = {}

    def __repr__(self) -> str:
        return f"Keyring({str(self.keys_dir)!r}, kek_id={self.kms.kek_id!r})"

    # --- storage ------------------------------------------------------------------------------
    def _emit(self, event: str, details: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit(event, details)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.keys_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _dek_path(self, dataset: str) -> Path:
        if not _DATASET_RE.match(dataset):
            raise KeyConfigError(
                f"dataset code {dataset!r} may hold 1-64 letters, digits, '.', '_', '-' only"
            )
        return self.keys_dir / "deks" / f"{dataset}.json"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KeyManagementError(f"{path}: unreadable key store: {exc}") from exc

    def _write(self, path: Path, doc: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise KeyManagementError(f"{path}: cannot write the key store: {exc}") from exc

    def _unwrap_entry(self, dataset: str, entry: dict[str, Any], path: Path) -> DataKey:
        kid = entry["key_id"]
        if entry.get("kek_id") not in (None, self.kms.kek_id):
            raise KeyManagementError(
                f"{path}: key {kid!r} is wrapped under {entry['kek_id']}, not under the "
                f"configured KEK {self.kms.kek_id} (主密钥不符)"
            )
        try:
            raw = self.kms.unwrap(bytes.fromhex(entry["wrapped"]), _dek_aad(dataset, kid))
        except KeyManagementError as exc:
            raise KeyManagementError(f"{path}: key {kid!r}: {exc}") from exc
        return DataKey(dataset, kid, raw, datetime.fromisoformat(entry["created_at"]))

    def _add_key(self, dataset: str, doc: dict[str, Any] | None) -> tuple[dict[str, Any], DataKey]:
        doc = doc or {"format": _STORE_FORMAT, "dataset": dataset, "current": None, "keys": []}
        kid = f"k{len(doc['keys']) + 1}-{secrets.token_hex(4)}"
        dk = DataKey(dataset, kid, os.urandom(16), _now())
        doc["keys"].append(
            {
                "key_id": kid,
                "created_at": dk.created_at.isoformat(),
                "kek_id": self.kms.kek_id,
                "wrapped": self.kms.wrap(dk.key, _dek_aad(dataset, kid)).hex(),
            }
        )
        doc["current"] = kid
        return doc, dk

    # --- public -------------------------------------------------------------------------------
    def current(self, dataset: str) -> DataKey:
        """The dataset's current data key; creates the first one on first use.

        Args:
            dataset: dataset code (letters, digits, ``.``, ``_``, ``-``).

        Returns:
            :class:`DataKey` (16-byte SM4 key).

        Raises:
            KeyConfigError: invalid dataset code.
            KeyManagementError: the store is unreadable or the key cannot be unwrapped.
        """
        path = self._dek_path(dataset)
        doc = self._read(path)
        if doc is None:
            with self._locked():
                doc = self._read(path)
                if doc is None:
                    doc, dk = self._add_key(dataset, None)
                    self._write(path, doc)
                    self._cache[(dataset, dk.key_id)] = dk
                    self._emit(
                        "key.create",
                        {"dataset": dataset, "key_id": dk.key_id, "kek_id": self.kms.kek_id},
                    )
                    return dk
        return self.get(dataset, doc["current"])

    def get(self, dataset: str, key_id: str) -> DataKey:
        """A data key of ``dataset`` by id (old, rotated keys stay readable).

        Raises:
            KeyManagementError: no such key (message names dataset and key id) or unwrap failed.
        """
        cached = self._cache.get((dataset, key_id))
        if cached is not None:
            return cached
        path = self._dek_path(dataset)
        doc = self._read(path)
        for entry in (doc or {}).get("keys", []):
            if entry["key_id"] == key_id:
                dk = self._unwrap_entry(dataset, entry, path)
                self._cache[(dataset, key_id)] = dk
                return dk
        raise KeyManagementError(f"{path}: no data key {key_id!r} for dataset {dataset!r}")

    def key_ids(self, dataset: str) -> list[str]:
        """Ids of all keys of ``dataset``, oldest first (empty if none)."""
        doc = self._read(self._dek_path(dataset))
        return [e["key_id"] for e in (doc or {}).get("keys", [])]

    def new_data_key(self, dataset: str) -> DataKey:
        """Rotate: create a new data key and make it current; old keys stay readable.

        Returns:
            the new :class:`DataKey`.

        Raises:
            KeyConfigError / KeyManagementError: as :meth:`current`.
        """
        path = self._dek_path(dataset)
        with self._locked():
            doc = self._read(path)
            previous = doc["current"] if doc else None
            doc, dk = self._add_key(dataset, doc)
            self._write(path, doc)
        self._cache[(dataset, dk.key_id)] = dk
        self._emit(
            "key.rotate" if previous else "key.create",
            {
                "dataset": dataset,
                "key_id": dk.key_id,
                "previous_key_id": previous,
                "kek_id": self.kms.kek_id,
            },
        )
        return dk

    def token_key(self, domain: str) -> bytes:
        """32-byte HMAC-SM3 key of a token domain (令牌域密钥).

        ``HKDF-SM3(IKM = token master key, salt = none, info = "govdx/token/v1" 0x00 domain,
        L = 32)`` (RFC 5869); the 32-byte token master key is created on first use and kept
        wrapped under the KEK in ``token-master.json``.

        Raises:
            KeyManagementError: empty domain or the master key cannot be unwrapped.
        """
        if not domain:
            raise KeyManagementError("token domain must be non-empty (令牌域不能为空)")
        master = self._token_master()
        info = b"govdx/token/v1\x00" + domain.encode("utf-8")
        return HKDF(algorithm=hashes.SM3(), length=32, salt=None, info=info).derive(master)

    def _token_master(self) -> bytes:
        path = self.keys_dir / "token-master.json"
        doc = self._read(path)
        if doc is None:
            with self._locked():
                doc = self._read(path)
                if doc is None:
                    doc = {
                        "format": _STORE_FORMAT,
                        "created_at": _now().isoformat(),
                        "kek_id": self.kms.kek_id,
                        "wrapped": self.kms.wrap(os.urandom(32), _TOKEN_AAD).hex(),
                    }
                    self._write(path, doc)
                    self._emit("token_master.create", {"kek_id": self.kms.kek_id})
        if doc.get("kek_id") not in (None, self.kms.kek_id):
            raise KeyManagementError(
                f"{path}: wrapped under {doc['kek_id']}, not the configured KEK {self.kms.kek_id}"
            )
        try:
            return self.kms.unwrap(bytes.fromhex(doc["wrapped"]), _TOKEN_AAD)
        except KeyManagementError as exc:
            raise KeyManagementError(f"{path}: {exc}") from exc

    def rewrap(self, new_kms: Kms) -> int:
        """KEK rotation (主密钥轮换): re-wrap every DEK and the token master under ``new_kms``.

        Data is not touched: DEKs keep their bytes and ids. Each file is replaced atomically;
        entries already under ``new_kms`` are skipped, so an interrupted rewrap can be re-run.
        Afterwards this keyring uses ``new_kms``.

        Returns:
            number of keys re-wrapped (int).

        Raises:
            KeyManagementError: a key cannot be unwrapped with the current KMS.
        """
        old, count = self.kms, 0
        with self._locked():
            for path in sorted((self.keys_dir / "deks").glob("*.json")):
                doc = self._read(path)
                assert doc is not None
                dataset = doc["dataset"]
                for entry in doc["keys"]:
                    if entry.get("kek_id") == new_kms.kek_id:
                        continue
                    dk = self._unwrap_entry(dataset, entry, path)
                    aad = _dek_aad(dataset, dk.key_id)
                    entry["wrapped"] = new_kms.wrap(dk.key, aad).hex()
                    entry["kek_id"] = new_kms.kek_id
                    count += 1
                self._write(path, doc)
            tpath = self.keys_dir / "token-master.json"
            tdoc = self._read(tpath)
            if tdoc is not None and tdoc.get("kek_id") != new_kms.kek_id:
                master = self._token_master()
                tdoc["wrapped"] = new_kms.wrap(master, _TOKEN_AAD).hex()
                tdoc["kek_id"] = new_kms.kek_id
                self._write(tpath, tdoc)
                count += 1
            self.kms = new_kms
        self._emit(
            "key.rewrap", {"keys": count, "old_kek_id": old.kek_id, "new_kek_id": new_kms.kek_id}
        )
        return count


def keyring_from_settings(settings: Settings, *, audit: Audit | None = None) -> Keyring:
    """The deployment's keyring: ``GOVDX_KEK_HEX`` if set, else ``<home>/keys/kek.key``.

    The key file is generated (mode 0600) when missing only with ``env=development``.

    Args:
        settings: :class:`govdx.Settings`.
        audit: optional audit callback passed to the :class:`Keyring`.

    Raises:
        KeyConfigError: production without a KEK, a bad hex KEK or a key file readable by others.
    """
    if settings.kek_hex:
        kms = LocalKms.from_hex(settings.kek_hex)
    else:
        kms = LocalKms.from_file(
            settings.keys_dir / "kek.key", create=settings.env == "development"
        )
    return Keyring(settings.keys_dir, kms, audit=audit)
