"""Contribution bounding per table version, computed once and cached (贡献约束缓存).

Contribution bounding (step 1 of ``dp_query``, docs/dp.md) keeps at most ``max_contributions``
(*m*) rows of every privacy unit. It depends on the table version, the privacy unit and *m*
only — never on the query — so it is computed once per (dataset, Delta version, contract
definition, privacy unit, m) and reused by every later query on that version.

Which rows are kept (deterministic, independent of any query): the **first m rows of each unit
in storage order**, i.e. the row order of ``pipelines.Lakehouse.read`` (the version's Parquet
files in Delta-log order, rows in file order; a version is immutable, so the order is fixed).
Units are compared by exact value (Arrow dictionary encoding; null units form one unit). Removing or adding another unit leaves
the relative order of a unit's own rows unchanged, so its kept rows depend on its own rows only
(a stable transformation: each unit still owns ≤ m rows afterwards).

The selection is stored as the sorted positions of the *dropped* rows (usually none: a dataset
with one row per person drops nothing, and the query then reads the table as it is)::

    <GOVDX_HOME>/sandbox/cache/dp_bounding/<dataset code>/v<version>-m<m>-<key digest>.parquet
        int64 column ``row``; schema metadata: dataset, version, definition digest, privacy
        unit, m, rows of the version. File mode 0600, folders 0700, written to a temporary
        file in the same folder and renamed (atomic). A file whose metadata does not match the
        key or the table's row count, or that cannot be read, is recomputed and replaced.

The file holds row positions only — no value of any row.

Source: Apache Arrow ``dictionary_encode``, numpy stable ``argsort``; Parquet (pyarrow).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from sandbox._errors import RunError

#: Folder of the cache below ``<GOVDX_HOME>/sandbox/cache``.
CACHE_SUBDIR = "dp_bounding"
_META = b"govdx.dp_bounding"


@dataclass(frozen=True)
class BoundingKey:
    """What a bounded selection depends on.

    Attributes:
        dataset: the dataset's catalog code (信息资源代码).
        version: the pinned Delta version.
        definition: ``Contract.definition_digest()`` (SM3 hex) of the contract in force.
        privacy_unit: the privacy-unit column.
        max_contributions: rows kept per unit (m ≥ 1).
    """

    dataset: str
    version: int
    definition: str
    privacy_unit: str
    max_contributions: int

    def file_name(self) -> str:
        """``v<version>-m<m>-<SM3 of the key, 24 hex>.parquet``."""
        text = "\x1f".join(
            [self.dataset, str(self.version), self.definition, self.privacy_unit]
        ).encode("utf-8")
        digest = hashlib.new("sm3", text).hexdigest()[:24]
        return f"v{int(self.version)}-m{int(self.max_contributions)}-{digest}.parquet"

    def metadata(self, rows: int) -> dict[str, str]:
        """The key and the version's row count as the file's schema metadata."""
        return {
            "dataset": self.dataset,
            "version": str(int(self.version)),
            "definition": self.definition,
            "privacy_unit": self.privacy_unit,
            "max_contributions": str(int(self.max_contributions)),
            "rows": str(int(rows)),
        }


@dataclass(frozen=True)
class BoundedSelection:
    """The rows of one table version kept by contribution bounding.

    Attributes:
        rows: rows of the table version.
        drops: numpy ``int64[k]``, sorted positions (0-based, storage order) of the rows
            dropped because their unit already has m earlier rows.
    """

    rows: int
    drops: np.ndarray = field(repr=False)

    @property
    def dropped(self) -> int:
        """Number of dropped rows."""
        return len(self.drops)

    def keep_mask(self) -> pa.BooleanArray | None:
        """``pyarrow.BooleanArray[rows]`` (True = kept), or None when no row is dropped."""
        if not len(self.drops):
            return None
        keep = np.ones(self.rows, dtype=bool)
        keep[self.drops] = False
        return pa.array(keep, pa.bool_())


def bounded_selection(
    table: pa.Table, privacy_unit: str, max_contributions: int
) -> BoundedSelection:
    """Compute the bounded selection of a table (no cache): the first ``max_contributions``
    rows of every privacy unit in storage order are kept.

    Args:
        table: pyarrow.Table[rows × (privacy_unit, …)] in storage order (plaintext unit column).
        privacy_unit: the unit column.
        max_contributions: m ≥ 1.

    Returns:
        The :class:`BoundedSelection` (positions of the rows over the bound).

    Raises:
        RunError: the unit column is missing or m < 1.

    Computed with Arrow and numpy, no SQL engine: the unit column is dictionary-encoded (exact
    values; null units form one unit), a stable sort by unit code lists each unit's rows in
    storage order, and a row's rank within its unit is its position minus the unit's first
    position. (A DuckDB version reserved so much address space that OpenDP's shared library
    could no longer be mapped under the worker's ``RLIMIT_AS``.)
    """
    import pyarrow.compute as pc

    if privacy_unit not in table.column_names:
        raise RunError(f"dp_query: the table lacks the privacy-unit column {privacy_unit!r}")
    m = int(max_contributions)
    if m < 1:
        raise RunError("dp_query: max_contributions must be ≥ 1")
    n = table.num_rows
    if n <= m:
        return BoundedSelection(n, np.empty(0, dtype=np.int64))
    col = table[privacy_unit]
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    encoded = pc.dictionary_encode(col)
    # null units → code -1 → shifted to 0 (one unit of their own); others 1..k
    codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64) + 1
    if np.bincount(codes).max() <= m:  # the usual case: every unit within the bound
        return BoundedSelection(n, np.empty(0, dtype=np.int64))
    order = np.argsort(codes, kind="stable")  # rows grouped by unit, storage order inside
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    lengths = np.diff(np.r_[starts, n])
    rank = np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)
    drops = np.sort(order[rank >= m])
    return BoundedSelection(n, np.ascontiguousarray(drops, dtype=np.int64))


class BoundingCache:
    """Bounded selections on disk, one small Parquet file per :class:`BoundingKey`.

    Args:
        root: ``<GOVDX_HOME>/sandbox/cache`` (the files go to ``root/dp_bounding/<dataset>/``).

    Attributes:
        hits, misses: lookups answered from a file / computed (per instance, for tests and
            benchmarks).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / CACHE_SUBDIR
        self.hits = 0
        self.misses = 0

    def path(self, key: BoundingKey) -> Path:
        """The file of ``key``."""
        return self.root / key.dataset / key.file_name()

    def load(self, key: BoundingKey, rows: int) -> BoundedSelection | None:
        """The stored selection of ``key`` for a version of ``rows`` rows, or None when there
        is no file or it does not match (other key, other row count, unreadable)."""
        import pyarrow.parquet as pq

        path = self.path(key)
        try:
            stored = pq.read_table(path)
        except (OSError, pa.ArrowException):
            return None
        meta = (stored.schema.metadata or {}).get(_META)
        expected = key.metadata(rows)
        if meta is None or _decode(meta) != expected or stored.column_names != ["row"]:
            return None
        drops = np.ascontiguousarray(stored["row"].to_numpy(), dtype=np.int64)
        if len(drops) and (drops[0] < 0 or drops[-1] >= rows or np.any(np.diff(drops) <= 0)):
            return None
        return BoundedSelection(rows, drops)

    def store(self, key: BoundingKey, selection: BoundedSelection) -> Path:
        """Write ``selection`` for ``key`` (0600, atomic rename). Returns the file."""
        import json

        import pyarrow.parquet as pq

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta = json.dumps(key.metadata(selection.rows), sort_keys=True).encode("utf-8")
        table = pa.table({"row": pa.array(selection.drops, pa.int64())}).replace_schema_metadata(
            {_META: meta}
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
        try:
            with os.fdopen(fd, "wb") as fh:  # mkstemp creates the file with mode 0600
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def selection(self, key: BoundingKey, table: pa.Table) -> BoundedSelection:
        """The bounded selection of ``table`` (the version named by ``key``): from the file
        when it is there and matches, else computed with :func:`bounded_selection` and stored.

        Raises:
            RunError: the unit column is missing.
        """
        found = self.load(key, table.num_rows)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        sel = bounded_selection(table, key.privacy_unit, key.max_contributions)
        with contextlib.suppress(OSError):  # a read-only or full home: runs uncached
            self.store(key, sel)
        return sel


def _decode(meta: bytes) -> dict[str, str] | None:
    import json

    try:
        out = json.loads(meta.decode("utf-8"))
    except ValueError:
        return None
    return out if isinstance(out, dict) else None
