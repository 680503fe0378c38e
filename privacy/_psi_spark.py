"""The PSI server side as a Spark job (隐私求交服务端, Spark 分布式执行): one bucket, one unit of work.

:func:`psi_serve_spark` answers the same :class:`~privacy.PsiRequest` as :func:`privacy.psi_serve`
and returns the same kind of :class:`~privacy.PsiResponse`; the requester's
``PsiClientSession.finish`` cannot tell them apart, and the outcome (cardinality, or the
intersection in reveal mode) is the same. The work is split by the request's public buckets
(``uint32_be(SM3(item)[0:4]) mod B``, :func:`privacy.psi_bucket_of`, ``PsiClientSession.create(...,
buckets=B)``)::

    executors: normalize_identifiers + psi_bucket_of per Arrow batch  (mapInArrow)
    shuffle by bucket
    executors: per bucket b (groupBy(bucket).applyInArrow, one call per bucket):
               setup_b    = GCS{ H(y)^k : y in Y_b }  at fpr / B      (OpenMined PSI)
               response_b = [ (H(x)^a)^k  for the client's bucket-b points ]
    driver:    frames in bucket order → PsiResponse

One fresh server key ``k`` per call, the same for every bucket (as ``psi_serve``); it travels to
the executors in the task closure, inside the sandbox's cluster (docs/spark.md). What bucketing
leaks is in docs/psi.md: a request with more buckets than ``max_buckets`` is refused as by
``psi_serve``.

Library docs: OpenMined PSI (https://github.com/OpenMined/PSI), PySpark
``DataFrame.mapInArrow`` and ``GroupedData.applyInArrow``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from privacy._psi import (
    PsiError,
    PsiPolicyError,
    PsiRequest,
    PsiResponse,
    _new_key,
    _w_process,
    _w_setup,
    check_serve_request,
    normalize_identifiers,
    psi_bucket_of,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["psi_serve_spark"]

_ITEMS = pa.schema([pa.field("bucket", pa.int64()), pa.field("item", pa.string())])
_OUT = pa.schema(
    [
        pa.field("bucket", pa.int64()),
        pa.field("setup", pa.binary()),
        pa.field("response", pa.binary()),
    ]
)


def _normalize_batches(
    batches: Iterator[pa.RecordBatch], *, element: str, buckets: int, wanted: frozenset[int]
) -> Iterator[pa.RecordBatch]:
    """Executor: normalize one batch of raw identifiers (same function as the client) and
    bucket them; items of buckets the client left empty are dropped."""
    for b in batches:
        ns = normalize_identifiers(b.column(0).to_pylist(), element=element)
        bucket = psi_bucket_of(ns.items, buckets)
        t = pa.table(
            {"bucket": pa.array(bucket, pa.int64()), "item": pa.array(ns.items, pa.string())}
        )
        if len(wanted) < buckets:
            t = t.filter(pc.is_in(t["bucket"], pa.array(sorted(wanted), pa.int64())))
        yield from t.to_batches()


def _serve_bucket(
    group: pa.Table, *, key: bytes, reveal: bool, fpr_b: float, sizes: tuple[int, ...], frames: Any
) -> pa.Table:
    """Executor: the server step of one bucket (one OpenMined PSI setup + one request)."""
    b = int(group["bucket"][0].as_py())
    items = pc.unique(group["item"].drop_null()).to_pylist()
    setup = _w_setup(key, reveal, fpr_b, sizes[b], items)
    response = _w_process(key, reveal, frames.value[b])
    return pa.table({"bucket": [b], "setup": [setup], "response": [response]}, schema=_OUT)


def _bucket_server(
    key: bytes, reveal: bool, fpr_b: float, sizes: tuple[int, ...], frames: Any
) -> Any:
    """The per-bucket function for ``applyInArrow`` (a closure: its repr never shows the key)."""

    def serve(group: pa.Table) -> pa.Table:
        return _serve_bucket(group, key=key, reveal=reveal, fpr_b=fpr_b, sizes=sizes, frames=frames)

    return serve


def psi_serve_spark(
    server_items: Iterable[str | None] | DataFrame,
    request: PsiRequest | bytes,
    *,
    spark: SparkSession,
    fpr: float = 1e-9,
    allow_reveal: bool = False,
    max_items: int | None = None,
    max_buckets: int = 1,
) -> PsiResponse:
    """Answer a PSI request on Spark, one bucket per unit of work (same result as ``psi_serve``).

    Args:
        server_items: the dataset's identifiers: an iterable[m] of str/None (shipped to the
            cluster as one Arrow column) or a ``pyspark.sql.DataFrame`` whose first column holds
            them (e.g. a lakehouse table read on the cluster); normalized in the executors
            with the request's element, exactly as ``psi_serve`` does.
        request: the client's :class:`PsiRequest` or its bytes (``buckets=B`` from
            ``PsiClientSession.create``).
        spark: an active ``pyspark.sql.SparkSession``.
        fpr: false-positive probability for the whole query, in (0, 1); per bucket ``fpr / B``.
        allow_reveal: whether the dataset's policy allows reveal mode.
        max_items: cap on the request's items and on the distinct server items; None = no cap.
        max_buckets: largest bucket count accepted (docs/psi.md, "What leaks").

    Returns:
        :class:`PsiResponse` with ``B`` setups and responses, bound to the request's SM3.

    Raises:
        PsiPolicyError: as :func:`privacy.psi_serve` (reveal not allowed, too many buckets, a
            set over ``max_items``), before any bucket is served.
        PsiError: malformed request, ``fpr`` out of range, or a failed Spark job (names the
            executor's exception).

    Source: OpenMined PSI ``server.CreateSetupMessage`` / ``ProcessRequest``.
    """
    request = check_serve_request(
        request, fpr=fpr, allow_reveal=allow_reveal, max_items=max_items, max_buckets=max_buckets
    )
    from pyspark.sql import DataFrame

    B, reveal = request.buckets, request.reveal_intersection
    if isinstance(server_items, DataFrame):
        raw = server_items.select(server_items.columns[0])
    else:
        values = pa.array([None if v is None else str(v) for v in server_items], pa.string())
        raw = spark.createDataFrame(pa.table({"value": values}))
    wanted = frozenset(b for b, n in enumerate(request.bucket_sizes) if n)
    normalized = raw.mapInArrow(
        functools.partial(_normalize_batches, element=request.element, buckets=B, wanted=wanted),
        "bucket long, item string",
    )
    try:
        if max_items is not None:
            distinct = normalized.select("item").distinct().count()
            if distinct > max_items:
                raise PsiPolicyError(
                    f"PSI server set holds at least {distinct} distinct items, over the cap "
                    f"max_items={max_items} (数据集集合超过上限)",
                    limit=max_items,
                    actual=distinct,
                )
        key = _new_key("server", reveal)
        frames = spark.sparkContext.broadcast(dict(enumerate(request.frames)))
        try:
            # one row per non-empty client bucket, so a bucket without server items is served too
            marks = spark.createDataFrame(
                pa.table(
                    {
                        "bucket": pa.array(sorted(wanted), pa.int64()),
                        "item": pa.nulls(len(wanted), pa.string()),
                    },
                    schema=_ITEMS,
                )
            )
            serve = _bucket_server(key, reveal, fpr / B, request.bucket_sizes, frames)
            out = (
                (
                    normalized.unionByName(marks)
                    .repartition(max(len(wanted), 1), "bucket")
                    .groupBy("bucket")
                    .applyInArrow(serve, "bucket long, setup binary, response binary")
                    .toArrow()
                )
                if wanted
                else _OUT.empty_table()
            )
        finally:
            frames.unpersist()
    except PsiError:
        raise
    except Exception as exc:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        if isinstance(exc, (PySparkException, Py4JError)):
            raise PsiError(
                f"the Spark PSI job failed (Spark 求交作业失败): {str(exc).strip().splitlines()[0]}"
            ) from exc
        raise
    setups, responses = [b""] * B, [b""] * B
    for b, setup, response in zip(
        out["bucket"].to_pylist(),
        out["setup"].to_pylist(),
        out["response"].to_pylist(),
        strict=True,
    ):
        setups[b], responses[b] = setup, response
    missing = sorted(wanted - set(out["bucket"].to_pylist()))
    if missing:
        raise PsiError(f"the Spark PSI job returned no result for bucket(s) {missing}")
    return PsiResponse(
        reveal_intersection=reveal,
        fpr=float(fpr),
        bucket_sizes=request.bucket_sizes,
        request_sm3=request.sm3(),
        setups=tuple(setups),
        responses=tuple(responses),
    )
