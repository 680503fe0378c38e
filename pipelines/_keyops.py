"""Key operations on stored data (密钥运维): KEK rotation, dataset DEK rotation, coverage.

- :func:`rotate_kek` re-wraps every data key under a new master key without touching data
  (crash-safe: the new KEK is written to ``kek.key.next`` first and only replaces ``kek.key``
  after every DEK is re-wrapped; a re-run resumes).
- :func:`rotate_dataset_key` writes a new table version whose protected columns are encrypted
  under a fresh DEK (old versions stay readable under their old key ids).
- :func:`encryption_coverage` measures what the security report needs: the share of protected
  fields (sensitive PI or core/important grade) that the current version stores encrypted.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass

import pyarrow as pa

from govdx import Contract, Settings
from pipelines._lakehouse import CommitResult, Lakehouse
from pipelines._protect import CIPHER_META, KEY_META
from privacy import KeyConfigError, LocalKms, decrypt_column, encrypt_column, keyring_from_settings

NEXT_SUFFIX = ".next"


def rotate_kek(settings: Settings, *, audit=None) -> dict:
    """Rotate the master key (KEK) kept in ``<home>/keys/kek.key``.

    Returns:
        ``{"rewrapped": int, "old_kek_id": str, "new_kek_id": str}``.

    Raises:
        KeyConfigError: the KEK comes from ``GOVDX_KEK_HEX`` (rotate it in your secret store:
            run with the old value, then ``rewrap`` to the new one is not possible from here),
            or the key file is unreadable.
    """
    if settings.kek_hex:
        raise KeyConfigError(
            "the KEK comes from GOVDX_KEK_HEX: rotate it in the secret store that provides it "
            "(主密钥由环境变量提供，请在密钥管理系统中轮换)"
        )
    path = settings.keys_dir / "kek.key"
    nxt = path.with_name(path.name + NEXT_SUFFIX)
    keyring = keyring_from_settings(settings, audit=audit)
    old_id = keyring.kms.kek_id
    if nxt.exists():  # an interrupted rotation: resume with the key it already chose
        new_kms = LocalKms.from_file(nxt)
    else:
        fd = os.open(nxt, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
            f.flush()
            os.fsync(f.fileno())
        new_kms = LocalKms.from_file(nxt)
    count = keyring.rewrap(new_kms)
    os.replace(nxt, path)
    if audit:
        audit(
            "kek.rotate", {"old_kek_id": old_id, "new_kek_id": new_kms.kek_id, "rewrapped": count}
        )
    return {"rewrapped": count, "old_kek_id": old_id, "new_kek_id": new_kms.kek_id}


def rotate_dataset_key(
    contract: Contract, *, settings: Settings, version: int, run_id: str, digest: str, audit=None
) -> tuple[CommitResult, str]:
    """Re-encrypt a dataset's protected columns under a new DEK as a new table version.

    Args:
        contract: the dataset's contract (as registered in the catalog).
        version: the Delta version to re-encrypt (normally the current one).
        run_id: lineage run id of this rotation.
        digest: the source digest of ``version`` (the new version carries the same data).
        audit: optional ``(event, details)`` callback for key creation and decryptions.

    Returns:
        ``(commit result, new key id)``.
    """
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    keyring = keyring_from_settings(settings, audit=audit)
    table = lake.read(contract.name, version)
    new_key = keyring.new_data_key(contract.code)
    columns, fields = [], []
    for f in table.schema:
        col = table[f.name]
        meta = f.metadata or {}
        if meta.get(CIPHER_META) == b"SM4":
            old = keyring.get(contract.code, meta[KEY_META].decode())
            plain = decrypt_column(col, key=old, dataset=contract.code, column=f.name, audit=audit)
            col = encrypt_column(plain, key=new_key, dataset=contract.code, column=f.name)
            f = pa.field(f.name, col.type, metadata={**meta, KEY_META: new_key.key_id.encode()})
        columns.append(col)
        fields.append(f)
    rotated = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    result = lake.commit(contract.name, rotated, digest=digest, run_id=run_id, force=True)
    return result, new_key.key_id


@dataclass(frozen=True)
class Coverage:
    """Encryption coverage of one dataset version (敏感数据加密覆盖率).

    Attributes:
        protected: fields that must be stored encrypted (sensitive PI or core/important).
        encrypted: of those, fields stored as SM4 ciphertext in the version.
        missing: protected fields stored in plaintext (must be empty).
    """

    code: str
    version: int | None
    protected: list[str]
    encrypted: list[str]
    missing: list[str]

    @property
    def ratio(self) -> float:
        """encrypted ÷ protected; 1.0 when the dataset has no protected field."""
        return 1.0 if not self.protected else len(self.encrypted) / len(self.protected)

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def encryption_coverage(
    contract: Contract, *, lakehouse: Lakehouse, version: int | None
) -> Coverage:
    """Which protected fields the stored version really holds as ciphertext (reads the schema)."""
    protected = [f.name for f in contract.protected_fields]
    if version is None:
        return Coverage(contract.code, None, protected, [], protected)
    schema = lakehouse.read(contract.name, version).schema
    enc = [
        f.name
        for f in schema
        if (f.metadata or {}).get(CIPHER_META) == b"SM4" and f.name in protected
    ]
    return Coverage(contract.code, version, protected, enc, [p for p in protected if p not in enc])


def contract_of(dataset) -> Contract:
    """The contract registered with a catalog entry (``Dataset.contract_yaml``)."""
    import yaml

    return Contract.from_dict(
        yaml.safe_load(dataset.contract_yaml or ""), path=f"catalog:{dataset.code}"
    )
