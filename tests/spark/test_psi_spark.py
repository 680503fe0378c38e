"""PSI served as a Spark job equals the single-machine psi_serve, bucket by bucket."""

from __future__ import annotations

import random

import pytest

from privacy import PsiClientSession, PsiPolicyError, PsiResponse, psi_bucket_of, psi_serve
from privacy._psi_spark import psi_serve_spark

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # pyspark on pandas 3
]


@pytest.fixture(scope="module")
def sets():
    rng = random.Random(20261129)
    server = [f"SRV{rng.randrange(10**12):012d}" for _ in range(3000)]
    shared = rng.sample(server, 400)
    client = shared + [f"CLI{rng.randrange(10**12):012d}" for _ in range(600)]
    rng.shuffle(client)
    # formatting noise and nulls on the server side: normalized away as psi_serve does
    noisy = [f" {s.lower()} " if i % 7 == 0 else s for i, s in enumerate(server)]
    return [*noisy, None, "", server[0]], client, set(shared)


@pytest.mark.parametrize(
    ("reveal", "buckets"),
    [
        pytest.param(False, 4, id="cardinality-4-buckets"),
        pytest.param(True, 3, id="reveal-3-buckets"),
        pytest.param(False, 1, id="cardinality-1-bucket"),
    ],
)
def test_spark_psi_equals_single_machine(spark, sets, reveal, buckets):
    server, client, shared = sets
    session, request = PsiClientSession.create(client, reveal_intersection=reveal, buckets=buckets)
    kw = dict(allow_reveal=reveal, max_buckets=4, max_items=5000)
    on_spark = psi_serve_spark(server, request.to_bytes(), spark=spark, **kw)
    local = psi_serve(server, request, processes=1, **kw)
    assert PsiResponse.from_bytes(on_spark.to_bytes()).bucket_sizes == request.bucket_sizes
    assert on_spark.request_sm3 == local.request_sm3 == request.sm3()
    got, want = session.finish(on_spark), session.finish(local)
    assert got == want
    assert got.cardinality == 400
    if reveal:
        assert set(got.intersection) == shared


def test_spark_psi_reads_a_dataframe_column(spark, sets):
    server, client, _ = sets
    session, request = PsiClientSession.create(client, reveal_intersection=False, buckets=2)
    df = spark.createDataFrame([(s,) for s in server], "taxpayer_id string")
    out = psi_serve_spark(df, request, spark=spark, max_buckets=2)
    assert session.finish(out).cardinality == 400


def test_empty_client_bucket_and_empty_server(spark):
    items = ["A1", "B2", "C3"]
    buckets = 8
    assert len(set(psi_bucket_of(items, buckets).tolist())) < buckets  # some buckets empty
    session, request = PsiClientSession.create(items, reveal_intersection=False, buckets=buckets)
    out = psi_serve_spark(["B2", "Z9"], request, spark=spark, max_buckets=8)
    assert session.finish(out).cardinality == 1
    assert session.finish(psi_serve_spark([], request, spark=spark, max_buckets=8)).cardinality == 0


def test_policy_refusals_match_psi_serve(spark, sets):
    server, client, _ = sets
    _, reveal_req = PsiClientSession.create(client[:10], reveal_intersection=True)
    with pytest.raises(PsiPolicyError, match="allow_reveal=False"):
        psi_serve_spark(server, reveal_req, spark=spark)
    _, bucketed = PsiClientSession.create(client[:10], reveal_intersection=False, buckets=4)
    with pytest.raises(PsiPolicyError, match="max_buckets=1") as exc:
        psi_serve_spark(server, bucketed, spark=spark)
    assert (exc.value.limit, exc.value.actual) == (1, 4)
    _, plain = PsiClientSession.create(client[:10], reveal_intersection=False)
    with pytest.raises(PsiPolicyError, match="max_items=2999") as exc:
        psi_serve_spark(server, plain, spark=spark, max_items=2999)
    assert exc.value.actual == 3000
