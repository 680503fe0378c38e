"""Spark engine (分布式引擎, ``engine=spark``): the ingest steps on PySpark, same step functions.

The embedded engine (:func:`pipelines.transform`) runs parse → map → cast → validate → protect on
one machine. This module runs the *same* functions on a Spark cluster through
``DataFrame.mapInArrow`` (Arrow record batches in, Arrow record batches out); there is no second
implementation of any step. Plan of one run (details and trade-offs in docs/spark.md)::

    driver                                   executors (mapInArrow, one task per chunk)
    decode bytes → UTF-8 (_to_utf8),
    read the header, cut the body at record
    boundaries into chunks ───────────────►  _read_csv(header + chunk) → map_columns →
      (XLSX / JSON: read_source on the         cast_table; typed rows + parse/cast rejects
       driver, ship the mapped batches)        + rows read, tagged by chunk
    ◄─────────────────────────────────────
    validate() over the whole typed table
    (primary-key duplicates, GX suite and
    GB/T 36344 scores need every row),
    quality gate, protect_rejects ────────►  protect(batch) (SM4 + HMAC-SM3 tokens)
    ◄─────────────────────────────────────
    the protected table, in source order → task_commit → one atomic Delta version (deltalake)

The quality suite of ``validate()`` runs through Great Expectations' Spark data source
(``SparkDFExecutionEngine``) in this session (see :func:`quality.check_table`, ``spark=``).

Records are numbered exactly as the embedded reader numbers them (``_row`` is the physical line
where a record starts) and the pieces are put back in source order, so both engines return the
same rows, the same rejects in the same order, and the same scores.

Errors: a failing Spark task (any executor exception) becomes :class:`pipelines.IngestError`
naming the file, the stage and the executor's exception line; nothing is committed.

Library docs: PySpark ``DataFrame.mapInArrow`` / ``toArrow`` / ``SparkSession.createDataFrame``
(https://spark.apache.org/docs/latest/api/python/), Apache Arrow.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from govdx import Contract, Source
from pipelines._cast import arrow_schema, cast_table
from pipelines._errors import IngestError, SourceError
from pipelines._parse import (
    REJECTS_SCHEMA,
    _body_end,
    _read_csv,
    _to_utf8,
    map_columns,
    read_source,
)
from pipelines._progress import report
from pipelines._protect import TOKEN_ELEMENTS, protect
from pipelines._validate import ROW

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from privacy import DataKey, Keyring

__all__ = ["SPARK_CONF", "spark_session", "stop_spark", "transform_on_spark", "transform_spark"]

#: Session settings govdx needs whatever the cluster: Beijing session time zone (timestamps
#: cross the JVM as instants and come back in Asia/Shanghai), Arrow transfer, the venv's Python
#: on the workers, no UI and no console progress bar.
SPARK_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "Asia/Shanghai",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
    "spark.sql.shuffle.partitions": "8",
    # local mode: the driver JVM is the executor and holds the collected batches (1 GiB default
    # runs out at 1,000,000 rows); on a cluster spark-submit's --driver-memory decides
    "spark.driver.memory": "4g",
    "spark.pyspark.python": sys.executable,
    "spark.pyspark.driver.python": sys.executable,
}

CHUNK = "_chunk"  # order key of the piece a stage-1 row came from (sort key on the driver)
KIND = "_kind"  # stage-1 row kind, see the constants below
SEQ = "_seq"  # position of a passed row, to put the protected rows back in order
_ROWS, _PARSE_REJECT, _CAST_REJECT, _META = 0, 1, 2, 3  # _META: ``_row`` holds rows read
_MIN_CHUNK_BYTES = 1 << 20


# --- session ------------------------------------------------------------------------------------
@contextmanager
def spark_session(
    master: str = "local[2]", *, app_name: str = "govdx", conf: dict[str, str] | None = None
) -> Iterator[SparkSession]:
    """A Spark session for one block: started here, stopped (with its JVM) on exit.

    When a SparkContext is already active in this process (a long-lived driver, a test
    fixture, a ``spark-submit`` job), that session is yielded and left running: the caller who
    started it stops it.

    Args:
        master: Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``, ``k8s://...``),
            normally ``Settings.spark_master``.
        app_name: application name shown by the cluster manager.
        conf: extra Spark settings, applied over :data:`SPARK_CONF`.

    Yields:
        ``pyspark.sql.SparkSession``.

    Raises:
        IngestError: pyspark is not installed or Java cannot start (names the cause).
    """
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency here
        raise IngestError("engine=spark needs pyspark (pip install pyspark; Java 17)") from exc
    if SparkContext._active_spark_context is not None:
        yield SparkSession.builder.getOrCreate()
        return
    # PySpark takes the workers' interpreter from PYSPARK_PYTHON when the context starts (the
    # spark.pyspark.python setting is not read in local mode): default to this interpreter, so
    # the workers import govdx, pyarrow and the crypto libraries of the same environment.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**SPARK_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        raise IngestError(f"cannot start Spark at {master!r} (Spark 启动失败): {exc}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        stop_spark(spark)


def stop_spark(spark: SparkSession, *, timeout_s: float = 30.0) -> None:
    """Stop ``spark`` and end its JVM (py4j gateway process), so no JVM outlives the block.

    ``SparkSession.stop()`` alone keeps the gateway JVM for reuse until Python exits; this closes
    the gateway and the JVM's stdin (PySpark's gateway server exits on EOF) and waits for it.

    Args:
        spark: the session.
        timeout_s: seconds to wait for the JVM to exit before killing it.
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    finally:
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=timeout_s)
            except Exception:  # pragma: no cover - a hung JVM
                proc.kill()
                proc.wait()
        SparkContext._gateway = None
        SparkContext._jvm = None


# --- keys for the executors -------------------------------------------------------------------
@dataclass(frozen=True)
class _TaskKeys:
    """The keys :func:`protect` asks a keyring for, resolved on the driver for the executors.

    Duck-types the two :class:`privacy.Keyring` methods ``protect`` calls. On ``local[n]`` the
    executors share the driver's machine; on a cluster this travels inside the task closure
    (set ``spark.authenticate`` and ``spark.network.crypto.enabled``) — see docs/spark.md for
    the KMS alternative.
    """

    dataset: str
    key: DataKey = field(repr=False)
    tokens: dict[str, bytes] = field(repr=False)

    def current(self, dataset: str) -> DataKey:
        if dataset != self.dataset:
            raise IngestError(f"task keys are for {self.dataset!r}, not {dataset!r}")
        return self.key

    def token_key(self, domain: str) -> bytes:
        return self.tokens[domain]


def _task_keys(contract: Contract, keyring: Keyring) -> _TaskKeys:
    elements = sorted({f.element for f in contract.fields if f.element in TOKEN_ELEMENTS})
    return _TaskKeys(
        contract.code, keyring.current(contract.code), {e: keyring.token_key(e) for e in elements}
    )


# --- stage 1: parse + map + cast in the executors ----------------------------------------------
def _stage1_schema(contract: Contract) -> pa.Schema:
    return pa.schema(
        [
            *arrow_schema(contract),
            pa.field(CHUNK, pa.int64()),
            pa.field(KIND, pa.int8()),
            pa.field("_field", pa.string()),
            pa.field("_value", pa.string()),
            pa.field("_reason", pa.string()),
        ]
    )


def _tagged(
    schema: pa.Schema, n: int, chunk: int, kind: int, cols: dict[str, Any]
) -> list[pa.RecordBatch]:
    arrays = []
    for f in schema:
        if f.name == CHUNK:
            arrays.append(pa.array(np.full(n, chunk, np.int64)))
        elif f.name == KIND:
            arrays.append(pa.array(np.full(n, kind, np.int8)))
        elif f.name in cols:
            a = cols[f.name]
            arrays.append(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a)
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema).to_batches()


def _stage1_batches(
    chunk: int,
    mapped: pa.Table,
    parse_rejects: pa.Table,
    rows_in: int,
    contract: Contract,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """cast_table on one mapped piece; yields typed rows, parse/cast rejects and rows read."""
    cast = cast_table(mapped, contract)
    typed = cast.table
    yield from _tagged(
        schema, typed.num_rows, chunk, _ROWS, {n: typed[n] for n in typed.column_names}
    )
    for kind, rej in ((_PARSE_REJECT, parse_rejects), (_CAST_REJECT, cast.rejects)):
        if rej.num_rows:
            yield from _tagged(
                schema,
                rej.num_rows,
                chunk,
                kind,
                {
                    ROW: rej[ROW],
                    "_field": rej["field"],
                    "_value": rej["value"],
                    "_reason": rej["reason"],
                },
            )
    yield from _tagged(schema, 1, chunk, _META, {ROW: pa.array([rows_in], pa.int64())})


def _shift_rows(table: pa.Table, by: int) -> pa.Table:
    if by == 0 or table.num_rows == 0:
        return table
    i = table.column_names.index(ROW)
    return table.set_column(i, ROW, pc.add(table[ROW], pa.scalar(by, pa.int64())))


def _csv_chunks(
    batches: Iterator[pa.RecordBatch],
    *,
    header: bytes,
    source: Source,
    file: str,
    contract: Contract,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Executor side of a CSV: each input row is one chunk of records (UTF-8, header-less)."""
    for b in batches:
        for chunk, shift, data in zip(
            b[CHUNK].to_pylist(), b["shift"].to_pylist(), b["data"].to_pylist(), strict=True
        ):
            table, rejects, _ = _read_csv(header + data, source, file)
            rows_in = table.num_rows + len(pc.unique(rejects[ROW]))
            mapped = map_columns(_shift_rows(table, shift), contract, file=file)
            yield from _stage1_batches(
                chunk, mapped, _shift_rows(rejects, shift), rows_in, contract, schema
            )


def _mapped_batches(
    batches: Iterator[pa.RecordBatch], *, contract: Contract, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Executor side of XLSX/JSON: batches of the mapped string table read on the driver."""
    empty = REJECTS_SCHEMA.empty_table()
    for b in batches:
        if b.num_rows == 0:
            continue
        t = pa.Table.from_batches([b])
        first = int(t[SEQ][0].as_py())
        yield from _stage1_batches(first, t.drop_columns([SEQ]), empty, 0, contract, schema)


def _cut_points(body: bytes, pieces: int) -> list[int]:
    """Offsets that split ``body`` into about ``pieces`` parts at record boundaries.

    A boundary is a ``\\n`` preceded by an even number of ``"`` in the body (RFC 4180: quotes
    only open/close quoted fields and are doubled inside them), so a quoted value holding a
    newline is never cut. A body with an odd number of quotes is not cut at all.
    """
    n = len(body)
    if pieces <= 1 or n == 0:
        return [0, n]
    quoted = b'"' in body
    if quoted and body.count(b'"') % 2:
        return [0, n]
    step = max(n // pieces, 1)
    cuts, prev, quotes = [0], 0, 0
    target = step
    while target < n:
        nl = body.find(b"\n", max(target, prev))
        while nl >= 0 and quoted:
            quotes += body.count(b'"', prev, nl)
            prev = nl
            if quotes % 2 == 0:
                break
            nl = body.find(b"\n", nl + 1)
        if nl < 0 or nl + 1 >= n:
            break
        cuts.append(nl + 1)
        prev = nl + 1
        target = max(prev, target + step)
    cuts.append(n)
    return cuts


def _warn_missing_optional(raw: pa.Table, contract: Contract) -> None:
    """The embedded engine's warning for optional fields without a source column."""
    from pipelines._ingest import raw_columns_matched

    missing = [
        f.name
        for f in contract.fields
        if not f.required and f.name not in raw_columns_matched(raw, f)
    ]
    if missing:
        report(
            "transform",
            f"warning: no source column for optional field(s) {missing}: "
            "stored as NULL (可选字段未找到对应列)",
        )


def _csv_frame(
    spark: SparkSession, data: bytes, source: Source, file: str, contract: Contract, pieces: int
) -> tuple[DataFrame, Callable[..., Any], str]:
    """Decode, check the header on the driver, and one Spark partition per chunk of records."""
    buf, encoding = _to_utf8(data, source.encoding, file)
    pos = 0
    for _ in range(source.header_row - 1):
        nl = buf.find(b"\n", pos)
        if nl < 0:
            break  # _read_csv below raises the embedded reader's error
        pos = nl + 1
    nl = buf.find(b"\n", pos)
    header_end = len(buf) if nl < 0 else nl + 1
    head_only = source.model_copy(update={"footer_rows": 0})
    head, _, _ = _read_csv(buf[:header_end], head_only, file)  # header errors as embedded
    map_columns(head, contract, file=file)  # MissingColumnError before any task runs
    _warn_missing_optional(head, contract)
    end = _body_end(buf, header_end, source.footer_rows, source.delimiter, file)
    header = buf[pos:header_end]
    if not header.endswith(b"\n"):
        header += b"\n"
    body = buf[header_end:end]
    cuts = _cut_points(body, pieces)
    rows = []
    first_line, lines = source.header_row + 1, 0
    for k in range(len(cuts) - 1):
        lo, hi = cuts[k], cuts[k + 1]
        # the chunk reader numbers its first record line 2 (header on line 1)
        rows.append((k, first_line + lines - 2, body[lo:hi]))
        lines += body.count(b"\n", lo, hi)
    rdd = spark.sparkContext.parallelize(rows, max(len(rows), 1))
    frame = spark.createDataFrame(rdd, f"{CHUNK} long, shift long, data binary")
    chunk_source = source.model_copy(update={"header_row": 1, "footer_rows": 0})
    fn = functools.partial(
        _csv_chunks,
        header=header,
        source=chunk_source,
        file=file,
        contract=contract,
        schema=_stage1_schema(contract),
    )
    return frame, fn, encoding


# --- stage 2: protect in the executors ----------------------------------------------------------
def _protect_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    contract: Contract,
    keys: _TaskKeys,
    in_schema: pa.Schema,
    out_schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Executor side of protect: SM4-encrypt and tokenize one batch, keep its order key."""
    for b in batches:
        t = pa.Table.from_batches([b]).cast(in_schema)  # Beijing time zone back on timestamps
        out = protect(t.drop_columns([SEQ]), contract, keyring=keys)  # type: ignore[arg-type]
        out = out.append_column(SEQ, t[SEQ])
        yield from out.cast(out_schema).to_batches()


# --- driver -------------------------------------------------------------------------------------
_EXC_LINE = re.compile(r"^\s*([\w.]+(?:Error|Exception)[^\n]*)$", re.MULTILINE)


def _collect(df: DataFrame, *, stage: str, file: str) -> pa.Table:
    """``df.toArrow()``, a failed Spark job translated into :class:`IngestError`."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        return df.toArrow()
    except (PySparkException, Py4JError) as exc:
        found = _EXC_LINE.findall(str(exc))
        cause = found[-1].strip() if found else str(exc).strip().splitlines()[0]
        raise IngestError(
            f"{file}: the Spark {stage} job failed, nothing was committed (Spark 作业失败): {cause}"
        ) from exc


def _refuse_empty(rows_in: int, contract: Contract, file: str) -> None:
    """The embedded engine's refusal of a delivery without data rows (unless allow_empty)."""
    if rows_in == 0 and not contract.source.allow_empty:
        raise SourceError(
            "no data rows below the header (无数据行): refusing to replace the table with an "
            "empty version; set source.allow_empty: true if an empty delivery is legitimate",
            file=file,
        )


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([f.remove_metadata() for f in schema]))


def transform_spark(
    data: bytes,
    contract: Contract,
    *,
    file: str,
    keyring: Keyring,
    run_id: str,
    digest: str,
    spark: SparkSession,
    chunk_bytes: int = 8 << 20,
) -> tuple[pa.Table | None, pa.Table, dict]:
    """Parse, cast, validate and protect one file's bytes on Spark (pure: no writes).

    Same contract and return shape as :func:`pipelines.transform` and the same step functions;
    for the same bytes the outcome is the same rows in the same order (ciphertexts differ only
    by their random nonces), the same quarantine rows and the same counts and scores.

    Args:
        data: the landed file's bytes (decrypted), any encoding the contract allows.
        contract: the dataset contract.
        file: the source file name, for messages.
        keyring: the dataset's keyring; the driver resolves the current DEK and the token keys
            and ships them to the protect tasks (docs/spark.md, "Keys").
        run_id: lineage run id written into the quarantine rows.
        digest: SM3 hex digest of the source, written into the quarantine rows.
        spark: an active ``pyspark.sql.SparkSession`` (see :func:`spark_session`).
        chunk_bytes: target CSV chunk size (bytes of UTF-8 text per task); at least two chunks
            per core of the cluster are made whatever this says.

    Returns:
        ``(protected table | None, quarantine rows, counts)``: ``pyarrow.Table[passed rows ×
        (fields, <id>_token...)]`` (None when the quality gate refused the version),
        ``pyarrow.Table`` in :data:`pipelines.QUARANTINE_SCHEMA`, and counts ``rows_in``,
        ``rows_passed``, ``rows_quarantined``, ``pass_rate``, ``encoding``, ``scores``,
        ``gate_error``.

    Raises:
        SourceError / MissingColumnError: found on the driver (encoding, header, columns,
            footer), as the embedded engine raises them.
        IngestError: a Spark task failed (names the file, stage and executor exception).
    """
    t0 = time.perf_counter()
    source = contract.source
    stage1 = _stage1_schema(contract)
    cores = max(int(spark.sparkContext.defaultParallelism), 1)
    if source.format == "csv":
        pieces = max(2 * cores, -(-len(data) // max(chunk_bytes, _MIN_CHUNK_BYTES)))
        frame, fn, encoding = _csv_frame(spark, data, source, file, contract, pieces)
        raw_rejects = None
    else:  # XLSX / JSON: the document is parsed on the driver, the cast runs in the executors
        raw = read_source(file, source, data=data)
        encoding = raw.encoding
        _refuse_empty(raw.rows_in, contract, file)
        _warn_missing_optional(raw.table, contract)
        mapped = map_columns(raw.table, contract, file=file)
        mapped = mapped.append_column(SEQ, pa.array(np.arange(mapped.num_rows, dtype=np.int64)))
        frame = spark.createDataFrame(mapped)
        fn = functools.partial(_mapped_batches, contract=contract, schema=stage1)
        raw_rejects = raw.rejects
    out = _collect(frame.mapInArrow(fn, _spark_schema(stage1)), stage="parse/cast", file=file)
    out = out.take(pc.sort_indices(out, [(CHUNK, "ascending")]))  # stable: source order
    kind = out[KIND]
    typed_schema = arrow_schema(contract)
    typed = out.filter(pc.equal(kind, _ROWS)).select(typed_schema.names).cast(typed_schema)

    def rejects_of(k: int) -> pa.Table:
        r = out.filter(pc.equal(kind, k)).select([ROW, "_field", "_value", "_reason"])
        return r.rename_columns(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA)

    if raw_rejects is None:
        raw_rejects = rejects_of(_PARSE_REJECT)
        rows_in = int(pc.sum(out.filter(pc.equal(kind, _META))[ROW]).as_py() or 0)
        _refuse_empty(rows_in, contract, file)
    else:
        rows_in = raw.rows_in
    cast_rejects = rejects_of(_CAST_REJECT).sort_by([(ROW, "ascending")])
    prior = pa.concat_tables(
        [
            raw_rejects.select([ROW, "field", "value", "reason"]),
            cast_rejects.select([ROW, "field", "value", "reason"]),
        ]
    )
    from pipelines._ingest import finish_transform

    return finish_transform(
        typed,
        prior,
        contract,
        rows_in=rows_in,
        encoding=encoding,
        keyring=keyring,
        run_id=run_id,
        digest=digest,
        file=file,
        started=t0,
        protect_fn=lambda passed: _protect_on_spark(
            spark, passed, contract, keyring=keyring, file=file
        ),
        where=f" on Spark ({cores} cores)",
        spark=spark,
    )


def _protect_on_spark(
    spark: SparkSession, passed: pa.Table, contract: Contract, *, keyring: Keyring, file: str
) -> pa.Table:
    keys = _task_keys(contract, keyring)
    target = protect(passed.slice(0, 0), contract, keyring=keys)  # type: ignore[arg-type]
    if passed.num_rows == 0:
        return target
    n = passed.num_rows
    in_table = passed.append_column(SEQ, pa.array(np.arange(n, dtype=np.int64)))
    out_schema = target.schema.append(pa.field(SEQ, pa.int64()))
    fn = functools.partial(
        _protect_batches,
        contract=contract,
        keys=keys,
        in_schema=in_table.schema,
        out_schema=out_schema,
    )
    df = spark.createDataFrame(in_table).mapInArrow(fn, _spark_schema(out_schema))
    got = _collect(df, stage="protect", file=file)
    got = got.sort_by([(SEQ, "ascending")]).drop_columns([SEQ])
    if got.num_rows != n:
        raise IngestError(f"{file}: the Spark protect job returned {got.num_rows} rows for {n}")
    return got.cast(target.schema)


def transform_on_spark(
    data: bytes,
    contract: Contract,
    *,
    master: str,
    file: str,
    keyring: Keyring,
    run_id: str,
    digest: str,
) -> tuple[pa.Table | None, pa.Table, dict]:
    """:func:`transform_spark` inside :func:`spark_session` (``master`` from the settings).

    The drop-in for :func:`pipelines.transform` that ``task_transform(engine="spark")`` calls.

    Args:
        data, contract, file, keyring, run_id, digest: as :func:`transform_spark`.
        master: Spark master URL (``Settings.spark_master``); an already active session in this
            process is used instead and left running.

    Returns:
        As :func:`transform_spark`.

    Raises:
        IngestError: as :func:`transform_spark`, or Spark cannot start.
    """
    with spark_session(master) as spark:
        return transform_spark(
            data, contract, file=file, keyring=keyring, run_id=run_id, digest=digest, spark=spark
        )
