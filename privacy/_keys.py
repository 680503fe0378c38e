"""Envelope keys (信封加密): per-dataset data keys (DEK) wrapped by a master key (KEK).

Layout under ``keys_dir`` (``Settings.keys_dir``, mode 0700)::

    kek.key                  LocalKms key file: 32 hex chars, mode 0600 (主密钥)
    kek.key.next             the new KEK while a KEK rotation runs (left by an interrupted one)
    kek-history.json         ids (never keys) of retired KEKs, with time and successor
    deks/<dataset>.json      wrapped DEKs of one dataset, current key id (数据密钥)
    token-master.json        wrapped token master key (令牌主密钥)
    .lock                    flock held by every read-modify-write of the files above, and by
                             a whole KEK rotation (re-wrap and install of the new kek.key)

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
import threading
from collections.abc import Callable, Iterator, Sequence
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
#: Suffix of the new KEK file written first by a KEK rotation (``kek.key.next``).
NEXT_SUFFIX = ".next"
#: Non-secret record of retired KEK ids (``kek-history.json``).
HISTORY_FILE = "kek-history.json"


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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file 0600, fsync, ``os.replace``, dir fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise KeyManagementError(f"{path}: cannot write the key store: {exc}") from exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Keyring:
    """Per-dataset data keys, wrapped under a KMS and stored as JSON (密钥环).

    Every read-modify-write of the store (creating a DEK or the token master, rotating a DEK,
    re-wrapping under a new KEK, installing a new KEK file) holds the inter-process ``flock`` on
    ``keys_dir/.lock`` for its whole duration (re-entrant within this object) and, when the KEK
    comes from a key file (``kek_file``), re-reads ``kek.key`` and ``kek.key.next`` after taking
    the lock: a key is always wrapped under the KEK installed at that moment, never under one a
    concurrent rotation has just retired. Reads that meet a key wrapped under a KEK this object
    has not loaded re-read the KEK files under the lock once (a rotation ran since).

    Args:
        keys_dir: folder of the wrapped keys (``Settings.keys_dir``); created (0700) if missing.
        kms: wraps/unwraps the keys (:class:`LocalKms` or another :class:`Kms`).
        audit: optional callback ``(event, details)`` for ``key.create``, ``key.rotate``,
            ``key.rewrap``, ``token_master.create``; details never hold key bytes.
        kek_file: the key file ``kms`` was read from (``<home>/keys/kek.key``), or None when the
            KEK comes from elsewhere (``GOVDX_KEK_HEX``, an HSM). With a file, the keyring
            follows rotations made by other processes and :meth:`rotate_kek_file` works.
    """

    def __init__(
        self,
        keys_dir: Path,
        kms: Kms,
        *,
        audit: Audit | None = None,
        kek_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.keys_dir = Path(keys_dir)
        self.kms = kms
        self.kek_file = Path(kek_file) if kek_file is not None else None
        self._audit = audit
        self._cache: dict[tuple[str, str], DataKey] = {}
        self._pending: Kms | None = None  # kek.key.next of an interrupted rotation (under lock)
        self._mutex = threading.RLock()
        self._depth = 0

    def __repr__(self) -> str:
        return f"Keyring({str(self.keys_dir)!r}, kek_id={self.kms.kek_id!r})"

    # --- storage ------------------------------------------------------------------------------
    def _emit(self, event: str, details: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit(event, details)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``keys_dir/.lock`` (flock, exclusive); re-entrant; reloads the KEK files."""
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.keys_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    self._reload_kek()
                    yield
                finally:
                    self._depth = 0
            finally:
                os.close(fd)  # releases the flock

    def _next_path(self) -> Path:
        assert self.kek_file is not None
        return self.kek_file.with_name(self.kek_file.name + NEXT_SUFFIX)

    def _reload_kek(self) -> None:
        """Under the lock: the KEK installed now, and the pending one of an interrupted rotation."""
        if self.kek_file is None:
            return
        kms = LocalKms.from_file(self.kek_file)
        if kms.kek_id != self.kms.kek_id:
            self.kms = kms
        nxt = self._next_path()
        self._pending = LocalKms.from_file(nxt) if nxt.exists() else None

    def _kms_for(self, kek_id: str | None, extra: tuple[Kms, ...] = ()) -> Kms | None:
        """The loaded KMS that wrapped an entry recorded under ``kek_id`` (None: none loaded)."""
        if kek_id is None or kek_id == self.kms.kek_id:
            return self.kms
        for kms in (self._pending, *extra):
            if kms is not None and kms.kek_id == kek_id:
                return kms
        return None

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
        _write_private(path, json.dumps(doc, indent=2, sort_keys=True))

    def _retired_note(self, kek_id: str | None) -> str:
        hist = self._read(self.keys_dir / HISTORY_FILE) or {}
        for rec in hist.get("retired", []):
            if rec.get("kek_id") == kek_id:
                return (
                    f"{kek_id} was retired at {rec['retired_at']} by a KEK rotation to "
                    f"{rec['replaced_by']} (主密钥已轮换)"
                )
        return (
            f"{kek_id} is not in keys/{HISTORY_FILE} (retired before govdx kept that record, "
            "or not a KEK of this keyring)"
        )

    def _foreign_kek(self, items: list[tuple[Path, str, str | None]]) -> KeyManagementError:
        """The error for keys wrapped under a KEK that is not loaded; says how to repair."""
        listed = "; ".join(
            f"{path}: {what} is wrapped under {kek_id}, not under the configured KEK "
            f"{self.kms.kek_id} (主密钥不符); {self._retired_note(kek_id)}"
            for path, what, kek_id in items[:10]
        )
        more = f" (and {len(items) - 10} more)" if len(items) > 10 else ""
        if self.kek_file is not None:
            repair = (
                "restore that KEK from the backup of keys/kek.key taken before it was retired, "
                "into a file of 32 hex chars with mode 0600, and run `govdx keys rotate --kek "
                "--old-kek FILE` (Keyring.rotate_kek_file(retired=[...])); it re-wraps these "
                "keys under a new KEK"
            )
        else:  # GOVDX_KEK_HEX or another KMS: the CLI cannot rotate a KEK it does not keep
            repair = (
                "this deployment's KEK is not a key file (GOVDX_KEK_HEX or another KMS): get "
                "the retired KEK back from the secret store that held it and call "
                "Keyring.rewrap(<current KMS>, retired=[LocalKms.from_hex(<retired KEK>)]) "
                "(docs/crypto.md, 'Losing the KEK')"
            )
        return KeyManagementError(
            f"{listed}{more}. To repair (修复): {repair}. Without that KEK these keys and the "
            "table versions encrypted under them cannot be recovered (密钥无法恢复): re-ingest "
            "those versions from the landing zone."
        )

    def _unwrap_entry(
        self, dataset: str, entry: dict[str, Any], path: Path, extra: tuple[Kms, ...] = ()
    ) -> DataKey:
        kid = entry["key_id"]
        kms = self._kms_for(entry.get("kek_id"), extra)
        if kms is None:
            raise self._foreign_kek([(path, f"key {kid!r}", entry.get("kek_id"))])
        try:
            raw = kms.unwrap(bytes.fromhex(entry["wrapped"]), _dek_aad(dataset, kid))
        except KeyManagementError as exc:
            raise KeyManagementError(f"{path}: key {kid!r}: {exc}") from exc
        return DataKey(dataset, kid, raw, datetime.fromisoformat(entry["created_at"]))

    def _add_key(self, dataset: str, doc: dict[str, Any] | None) -> tuple[dict[str, Any], DataKey]:
        """Append a new DEK wrapped under ``self.kms``; call with the lock held (KEK reloaded)."""
        assert self._depth, "keyring store modified without its lock"
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
                created = None
                if doc is None:
                    doc, created = self._add_key(dataset, None)
                    self._write(path, doc)
                    self._cache[(dataset, created.key_id)] = created
                    kek_id = self.kms.kek_id
            if created is not None:
                self._emit(
                    "key.create", {"dataset": dataset, "key_id": created.key_id, "kek_id": kek_id}
                )
                return created
        return self.get(dataset, doc["current"])

    def get(self, dataset: str, key_id: str) -> DataKey:
        """A data key of ``dataset`` by id (old, rotated keys stay readable).

        A key wrapped under a KEK this keyring has not loaded makes it re-read the KEK files
        under the lock once (another process rotated the KEK since).

        Raises:
            KeyManagementError: no such key (message names dataset and key id), or unwrap failed
                (a key wrapped under a retired KEK: the message says how to repair it).
        """
        cached = self._cache.get((dataset, key_id))
        if cached is not None:
            return cached
        path = self._dek_path(dataset)
        entry = _find_entry(self._read(path), key_id)
        if entry is not None and self._kms_for(entry.get("kek_id")) is None and self.kek_file:
            with self._locked():
                entry = _find_entry(self._read(path), key_id)
                dk = None if entry is None else self._unwrap_entry(dataset, entry, path)
        else:
            dk = None if entry is None else self._unwrap_entry(dataset, entry, path)
        if dk is None:
            raise KeyManagementError(f"{path}: no data key {key_id!r} for dataset {dataset!r}")
        self._cache[(dataset, key_id)] = dk
        return dk

    def key_ids(self, dataset: str) -> list[str]:
        """Ids of all keys of ``dataset``, oldest first (empty if none)."""
        doc = self._read(self._dek_path(dataset))
        return [e["key_id"] for e in (doc or {}).get("keys", [])]

    def new_data_key(self, dataset: str) -> DataKey:
        """Rotate: create a new data key and make it current; old keys stay readable.

        The store is read, extended and written under the keys lock, and the new key is wrapped
        under the KEK installed at that moment.

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
            kek_id = self.kms.kek_id
        self._cache[(dataset, dk.key_id)] = dk
        self._emit(
            "key.rotate" if previous else "key.create",
            {
                "dataset": dataset,
                "key_id": dk.key_id,
                "previous_key_id": previous,
                "kek_id": kek_id,
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

    def _token_master(self, extra: tuple[Kms, ...] = ()) -> bytes:
        path = self.keys_dir / "token-master.json"
        doc = self._read(path)
        created = False
        if doc is None or (self._kms_for(doc.get("kek_id"), extra) is None and self.kek_file):
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
                    created = True
                kms = self._kms_for(doc.get("kek_id"), extra)
        else:
            kms = self._kms_for(doc.get("kek_id"), extra)
        if created:
            self._emit("token_master.create", {"kek_id": doc["kek_id"]})
        if kms is None:
            raise self._foreign_kek([(path, "the token master key", doc.get("kek_id"))])
        try:
            return kms.unwrap(bytes.fromhex(doc["wrapped"]), _TOKEN_AAD)
        except KeyManagementError as exc:
            raise KeyManagementError(f"{path}: {exc}") from exc

    def _rewrap_locked(self, new_kms: Kms, retired: tuple[Kms, ...]) -> int:
        """Re-wrap every key not yet under ``new_kms``; all-or-nothing check first. Lock held."""
        assert self._depth, "keyring store modified without its lock"
        docs: list[tuple[Path, dict[str, Any]]] = []
        foreign: list[tuple[Path, str, str | None]] = []
        for path in sorted((self.keys_dir / "deks").glob("*.json")):
            doc = self._read(path)
            if doc is None:
                continue
            docs.append((path, doc))
            for entry in doc["keys"]:
                kek_id = entry.get("kek_id")
                if kek_id != new_kms.kek_id and self._kms_for(kek_id, retired) is None:
                    foreign.append((path, f"key {entry['key_id']!r}", kek_id))
        tpath = self.keys_dir / "token-master.json"
        tdoc = self._read(tpath)
        if tdoc is not None:
            kek_id = tdoc.get("kek_id")
            if kek_id != new_kms.kek_id and self._kms_for(kek_id, retired) is None:
                foreign.append((tpath, "the token master key", kek_id))
        if foreign:  # before anything is rewritten
            raise self._foreign_kek(foreign)
        count = 0
        for path, doc in docs:
            changed = 0
            for entry in doc["keys"]:
                if entry.get("kek_id") == new_kms.kek_id:
                    continue
                dk = self._unwrap_entry(doc["dataset"], entry, path, retired)
                entry["wrapped"] = new_kms.wrap(dk.key, _dek_aad(doc["dataset"], dk.key_id)).hex()
                entry["kek_id"] = new_kms.kek_id
                changed += 1
            if changed:
                self._write(path, doc)
                count += changed
        if tdoc is not None and tdoc.get("kek_id") != new_kms.kek_id:
            master = self._token_master(retired)
            tdoc["wrapped"] = new_kms.wrap(master, _TOKEN_AAD).hex()
            tdoc["kek_id"] = new_kms.kek_id
            self._write(tpath, tdoc)
            count += 1
        return count

    def rewrap(self, new_kms: Kms, *, retired: Sequence[Kms] = ()) -> int:
        """KEK rotation (主密钥轮换): re-wrap every DEK and the token master under ``new_kms``.

        For a KEK that is not a key file (``GOVDX_KEK_HEX``, an HSM); a keyring built with
        ``kek_file`` refuses and points to :meth:`rotate_kek_file`, which also installs the new
        KEK under the same lock. Data is not touched: DEKs keep their bytes and ids. Every key is
        first checked to be unwrappable (nothing is rewritten otherwise); each file is replaced
        atomically; entries already under ``new_kms`` are skipped, so an interrupted rewrap can be
        re-run. Afterwards this keyring uses ``new_kms``.

        Args:
            new_kms: the KMS of the new KEK.
            retired: KMSs of older KEKs (restored from backup) for keys still wrapped under them.

        Returns:
            number of keys re-wrapped (int).

        Raises:
            KeyConfigError: the keyring's KEK comes from a key file.
            KeyManagementError: a key is wrapped under a KEK that neither the keyring nor
                ``retired`` holds (the message lists the keys and how to repair), or unwrap failed.
        """
        with self._locked():
            if self.kek_file is not None:
                raise KeyConfigError(
                    f"{self.kek_file}: this keyring's KEK is a key file; rotate it with "
                    "Keyring.rotate_kek_file() (`govdx keys rotate --kek`), which re-wraps and "
                    "installs the new KEK under one lock"
                )
            old = self.kms
            count = self._rewrap_locked(new_kms, tuple(retired))
            self.kms = new_kms
        self._emit(
            "key.rewrap", {"keys": count, "old_kek_id": old.kek_id, "new_kek_id": new_kms.kek_id}
        )
        return count

    def rotate_kek_file(self, *, retired: Sequence[Kms] = ()) -> dict[str, Any]:
        """Rotate the KEK key file (主密钥文件轮换), crash-safe, under the keys lock throughout.

        Steps, all holding ``keys_dir/.lock`` (so no key is created, rotated or re-wrapped
        meanwhile, and the KEK read is the one installed now): write a random KEK to
        ``kek.key.next`` (mode 0600) unless an interrupted rotation left one — then resume with
        it; re-wrap every key not yet under it (keys under ``kek.key``, under ``kek.key.next``
        or under a ``retired`` KEK); ``os.replace`` ``kek.key.next`` onto ``kek.key``; append the
        retired KEK id (never the key) to ``kek-history.json``.

        Args:
            retired: KMSs of older KEKs restored from backup, to repair keys a pre-fix race left
                wrapped under them.

        Returns:
            ``{"rewrapped": int, "old_kek_id": str, "new_kek_id": str}``.

        Raises:
            KeyConfigError: the keyring has no ``kek_file``, or a key file is unreadable.
            KeyManagementError: a key is wrapped under a KEK nobody holds (nothing is rewritten;
                the message lists the keys and the repair command), or the store is unwritable.
        """
        if self.kek_file is None:
            raise KeyConfigError(
                "this keyring's KEK is not a key file (GOVDX_KEK_HEX or another KMS): rotate it "
                "where it is kept, then call Keyring.rewrap(new_kms)"
            )
        with self._locked():
            old = self.kms
            nxt = self._next_path()
            if self._pending is None:
                _write_private(nxt, secrets.token_hex(16) + "\n")
                self._pending = LocalKms.from_file(nxt)
            new = self._pending
            count = self._rewrap_locked(new, tuple(retired))
            try:
                os.replace(nxt, self.kek_file)
                _fsync_dir(self.kek_file.parent)
            except OSError as exc:
                raise KeyManagementError(
                    f"{self.kek_file}: cannot install the new KEK: {exc}"
                ) from exc
            self.kms, self._pending = new, None
            if new.kek_id != old.kek_id:
                hpath = self.keys_dir / HISTORY_FILE
                hist = self._read(hpath) or {"format": _STORE_FORMAT, "retired": []}
                hist["retired"].append(
                    {
                        "kek_id": old.kek_id,
                        "retired_at": _now().isoformat(),
                        "replaced_by": new.kek_id,
                    }
                )
                self._write(hpath, hist)
        self._emit(
            "key.rewrap", {"keys": count, "old_kek_id": old.kek_id, "new_kek_id": new.kek_id}
        )
        return {"rewrapped": count, "old_kek_id": old.kek_id, "new_kek_id": new.kek_id}


def _find_entry(doc: dict[str, Any] | None, key_id: str) -> dict[str, Any] | None:
    for entry in (doc or {}).get("keys", []):
        if entry["key_id"] == key_id:
            return entry
    return None


def keyring_from_settings(settings: Settings, *, audit: Audit | None = None) -> Keyring:
    """The deployment's keyring: ``GOVDX_KEK_HEX`` if set, else ``<home>/keys/kek.key``.

    The key file is generated (mode 0600) when missing only with ``env=development``. A keyring
    on the key file follows KEK rotations made by other processes (see :class:`Keyring`).

    Args:
        settings: :class:`govdx.Settings`.
        audit: optional audit callback passed to the :class:`Keyring`.

    Raises:
        KeyConfigError: production without a KEK, a bad hex KEK or a key file readable by others.
    """
    if settings.kek_hex:
        return Keyring(settings.keys_dir, LocalKms.from_hex(settings.kek_hex), audit=audit)
    path = settings.keys_dir / "kek.key"
    kms = LocalKms.from_file(path, create=settings.env == "development")
    return Keyring(settings.keys_dir, kms, audit=audit, kek_file=path)
