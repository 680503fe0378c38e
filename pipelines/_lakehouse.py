"""The lakehouse (数据湖): one versioned Delta table per dataset, plus its quarantine table.

All I/O of the pipeline's tables goes through :class:`Lakehouse`; the steps compute on Arrow.
Writes use ``deltalake`` (delta-rs): each commit is one atomic entry in the Delta log, so a
failed write leaves the previous version current and readable. The SM3 digest of the source
and the lineage run id ride in the commit's ``custom_metadata``.

Layout: ``<root>/lakehouse/<name>/`` (dataset) and ``<root>/quarantine/<name>/`` (rejected rows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from pipelines._errors import CommitError

DIGEST_KEY = "govdx.source_digest"


def _to_arrow(dt: DeltaTable) -> pa.Table:
    """Read the version's active files with pyarrow (delta-rs resolves the file list).

    ``DeltaTable.to_pyarrow_table()`` (delta-rs 1.6) intermittently aborts the interpreter at
    exit ("terminate called without an active exception") on this platform; reading the
    resolved Parquet files with pyarrow avoids its runtime. govdx tables are unpartitioned and
    written without deletion vectors, so the active files are the whole version.
    """
    files = dt.file_uris()
    if not files:
        return pa.schema(dt.schema().to_arrow()).empty_table()
    return pq.read_table(files)


RUN_KEY = "govdx.run_id"
DEFINITION_KEY = "govdx.contract_definition"


@dataclass(frozen=True)
class CommitResult:
    """Outcome of a commit: Delta ``version``, ``rows`` written, ``created`` False on a no-op."""

    name: str
    version: int
    rows: int
    created: bool

    def to_dict(self) -> dict:
        return asdict(self)


class Lakehouse:
    """Delta tables under two folders of the home.

    Args:
        tables_dir: folder of dataset tables (``Settings.lakehouse_dir``).
        quarantine_dir: folder of quarantine tables (``Settings.quarantine_dir``).
    """

    def __init__(self, tables_dir: Path, quarantine_dir: Path) -> None:
        self.tables_dir = Path(tables_dir)
        self.quarantine_dir = Path(quarantine_dir)

    def table_uri(self, name: str) -> str:
        return str(self.tables_dir / name)

    def quarantine_uri(self, name: str) -> str:
        return str(self.quarantine_dir / name)

    # --- reads ------------------------------------------------------------------------------
    def _open(self, uri: str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(uri, version=version)
        except TableNotFoundError:
            return None

    def _version(self, name: str, version: int | None) -> DeltaTable:
        """The table at ``version`` (latest when None); CommitError naming both if absent."""
        try:
            return DeltaTable(self.table_uri(name), version=version)
        except (TableNotFoundError, DeltaError) as exc:
            raise CommitError(f"table {name!r} has no version {version}: {exc}") from exc

    def current_version(self, name: str) -> int | None:
        """Latest Delta version of the dataset table, or None if it has none."""
        dt = self._open(self.table_uri(name))
        return None if dt is None else dt.version()

    def read(self, name: str, version: int | None = None) -> pa.Table:
        """The dataset table at ``version`` (latest when None): pyarrow.Table[rows × fields].

        Raises:
            CommitError: the table or version does not exist.
        """
        return _to_arrow(self._version(name, version))

    def schema(self, name: str, version: int | None = None) -> pa.Schema:
        """The Arrow schema of the table at ``version`` (latest when None), field metadata
        included (``govdx.cipher``, ``govdx.key_id``), read from one Parquet footer — not the
        rows: a version is written in one overwrite, so its files share the schema.

        Raises:
            CommitError: the table or version does not exist.
        """
        dt = self._version(name, version)
        files = dt.file_uris()
        if not files:
            return pa.schema(dt.schema().to_arrow())
        return pq.read_schema(files[0])

    def version_of_digest(self, name: str, digest: str) -> int | None:
        """The Delta version committed from the source with SM3 ``digest``, if any."""
        dt = self._open(self.table_uri(name))
        if dt is None:
            return None
        for entry in dt.history():
            if entry.get(DIGEST_KEY) == digest:
                return int(entry["version"])
        return None

    def read_quarantine(self, name: str) -> pa.Table | None:
        """All quarantined rows of the dataset (every run), or None if none were ever written."""
        dt = self._open(self.quarantine_uri(name))
        return None if dt is None else _to_arrow(dt)

    # --- writes -----------------------------------------------------------------------------
    def commit(
        self,
        name: str,
        table: pa.Table,
        *,
        digest: str,
        run_id: str,
        definition: str | None = None,
        force: bool = False,
    ) -> CommitResult:
        """Write ``table`` as the dataset's new version (a full snapshot, mode overwrite).

        Idempotent per delivery: if the *latest* version came from the same source ``digest``
        under the same contract ``definition`` digest, nothing is written and that version is
        returned with ``created=False`` (this is also how a run whose catalog registration
        failed finds its commit again). Older versions with that digest do not count: sending
        last month's file again restores its content as a new version. ``force`` always writes
        (re-encryption under a new key).

        The ingest decides "already committed" from the latest commit's metadata (source digest
        and ``govdx.contract_definition``), so a commit without ``definition`` whose latest
        version came from the same ``digest`` (a key rotation re-encrypting that version) carries
        the latest version's definition over: the data definition is unchanged.

        Raises:
            CommitError: the Delta write failed; the previous version is untouched.
        """
        latest = self.latest_commit(name)
        if latest is not None and latest.get(DIGEST_KEY) == digest:
            if not force and (definition is None or latest.get(DEFINITION_KEY) == definition):
                return CommitResult(name, int(latest["version"]), table.num_rows, created=False)
            if definition is None:  # a re-encryption of the latest version: same definition
                definition = latest.get(DEFINITION_KEY)
        meta = {DIGEST_KEY: digest, RUN_KEY: run_id}
        if definition:
            meta[DEFINITION_KEY] = definition
        props = CommitProperties(custom_metadata=meta)
        try:
            write_deltalake(
                self.table_uri(name),
                table,
                mode="overwrite",
                schema_mode="overwrite",
                commit_properties=props,
            )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise CommitError(f"commit of table {name!r} failed: {exc}") from exc
        version = self.current_version(name)
        assert version is not None
        return CommitResult(name, version, table.num_rows, created=True)

    def latest_commit(self, name: str) -> dict | None:
        """The Delta log entry (commit info) of the latest version, or None without a table."""
        dt = self._open(self.table_uri(name))
        if dt is None:
            return None
        history = dt.history(1)
        return history[0] if history else None

    def append_quarantine(self, name: str, rows: pa.Table, *, digest: str, run_id: str) -> None:
        """Append rejected rows (already masked/encrypted) to the dataset's quarantine table.

        Appending the same run twice is prevented by the caller keying on ``run_id``.
        """
        if rows.num_rows == 0:
            return
        props = CommitProperties(custom_metadata={DIGEST_KEY: digest, RUN_KEY: run_id})
        try:
            write_deltalake(
                self.quarantine_uri(name),
                rows,
                mode="append",
                schema_mode="merge",  # new reject columns (rule, dimension) join older tables
                commit_properties=props,
            )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise CommitError(f"quarantine write of {name!r} failed: {exc}") from exc
