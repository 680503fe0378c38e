"""Key operations on stored data (密钥运维): KEK rotation, dataset DEK rotation, coverage.

- :func:`rotate_kek` re-wraps every data key under a new master key without touching data
  (crash-safe: the new KEK is written to ``kek.key.next`` first and only replaces ``kek.key``
  after every DEK is re-wrapped; a re-run resumes; the whole rotation holds the keys lock).
- :func:`rotate_dataset_key` writes a new table version whose protected columns are encrypted
  under a fresh DEK (old versions stay readable under their old key ids); a version without
  encrypted columns has nothing to rotate.
- :func:`encryption_coverage` measures what the security report needs: the share of protected
  fields (sensitive PI or core/important grade) that the current version stores encrypted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pyarrow as pa

from govdx import Contract, Settings
from pipelines._lakehouse import CommitResult, Lakehouse
from pipelines._protect import CIPHER_META, KEY_META
from privacy import KeyConfigError, Kms, decrypt_column, encrypt_column, keyring_from_settings


def rotate_kek(settings: Settings, *, audit=None, retired: Sequence[Kms] = ()) -> dict:
    """Rotate the master key (KEK) kept in ``<home>/keys/kek.key``.

    The whole rotation (choose or resume ``kek.key.next``, re-wrap every DEK and the token
    master, install the new ``kek.key``) runs under the keys lock (``keys/.lock``), so dataset
    rotations and ingestions in other processes wait for it and then wrap under the new KEK
    (:meth:`privacy.Keyring.rotate_kek_file`). Two rotations at once run one after the other.

    Args:
        settings: the deployment's settings (the KEK must come from the key file).
        audit: optional ``(event, details)`` callback (``key.rewrap``, ``kek.rotate``).
        retired: KMSs of older KEKs restored from backup (``--old-kek``), to repair keys that a
            concurrent rotation left wrapped under a retired KEK before this was fixed.

    Returns:
        ``{"rewrapped": int, "old_kek_id": str, "new_kek_id": str}``.

    Raises:
        KeyConfigError: the KEK comes from ``GOVDX_KEK_HEX`` (rotate it in your secret store:
            run with the old value, then ``rewrap`` to the new one is not possible from here),
            or the key file is unreadable.
        KeyManagementError: a key is wrapped under a KEK that is neither installed, pending nor
            in ``retired``; nothing is rewritten and the message names the keys and the fix.
    """
    if settings.kek_hex:
        raise KeyConfigError(
            "the KEK comes from GOVDX_KEK_HEX: rotate it in the secret store that provides it "
            "(主密钥由环境变量提供，请在密钥管理系统中轮换)"
        )
    keyring = keyring_from_settings(settings, audit=audit)
    out = keyring.rotate_kek_file(retired=retired)
    if audit:
        audit(
            "kek.rotate",
            {
                "old_kek_id": out["old_kek_id"],
                "new_kek_id": out["new_kek_id"],
                "rewrapped": out["rewrapped"],
            },
        )
    return out


def rotate_dataset_key(
    contract: Contract, *, settings: Settings, version: int, run_id: str, digest: str, audit=None
) -> tuple[CommitResult | None, str | None]:
    """Re-encrypt a dataset's protected columns under a new DEK as a new table version.

    The new DEK is created (under the keys lock, wrapped under the KEK installed at that moment)
    only once the version is known to hold SM4 columns. The caller serialises writers of the
    table (the CLI holds the home's ``ingest`` lock from reading the catalog version to
    registering the new one).

    Args:
        contract: the dataset's contract (as registered in the catalog).
        version: the Delta version to re-encrypt (normally the current one).
        run_id: lineage run id of this rotation.
        digest: the source digest of ``version`` (the new version carries the same data).
        audit: optional ``(event, details)`` callback for key creation and decryptions.

    Returns:
        ``(commit result, new key id)``, or ``(None, None)`` when ``version`` holds no encrypted
        column (no protected field): nothing to rotate, no key created, nothing written.
    """
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    table = lake.read(contract.name, version)
    if not any((f.metadata or {}).get(CIPHER_META) == b"SM4" for f in table.schema):
        return None, None
    keyring = keyring_from_settings(settings, audit=audit)
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
    def ratio(self) -> float | None:
        """encrypted ÷ protected (0.0–1.0); None when the dataset has no protected field (0 of 0,
        no value — the security-coverage report's rule, ``reports.Ratio(0, 0)``)."""
        return None if not self.protected else len(self.encrypted) / len(self.protected)

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def encryption_coverage(
    contract: Contract, *, lakehouse: Lakehouse, version: int | None
) -> Coverage:
    """Which protected fields the stored version really holds as ciphertext (reads the schema)."""
    protected = [f.name for f in contract.protected_fields]
    if version is None:
        return Coverage(contract.code, None, protected, [], protected)
    schema = lakehouse.schema(contract.name, version)  # the footer, not the rows
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


def publication_refusal(session, code: str, *, lakehouse: Lakehouse) -> str | None:
    """Why catalog entry ``code`` may not be published (发布被拒绝), or None when it may.

    The rule behind ``govdx catalog publish`` and ``POST /api/v1/catalog/datasets/{code}/publish``
    alike: the entry has a stored version, and that version holds every protected field (sensitive
    PI, core or important data) as SM4 ciphertext — 100 % encryption coverage (docs/crypto.md).

    Args:
        session: an open catalog session. code: the entry's code. lakehouse: the tables.

    Returns:
        the refusal naming the code, the coverage and the plaintext fields; None: publishable.

    Raises:
        catalog.DatasetNotFound: no such entry.
    """
    import catalog
    from reports import Ratio

    ds = catalog.get_dataset(session=session, code=code)
    v = catalog.current_version(session=session, code=code)
    cov = encryption_coverage(
        contract_of(ds), lakehouse=lakehouse, version=v.delta_version if v else None
    )
    if cov.version is None:
        why = "no stored version (无数据版本)"
    elif cov.missing:
        why = (
            f"encryption coverage {Ratio(len(cov.encrypted), len(cov.protected))} < 100%; "
            f"plaintext protected fields: {', '.join(cov.missing)}"
        )
    else:
        return None
    return f"{code}: publication refused (发布被拒绝): {why}"
