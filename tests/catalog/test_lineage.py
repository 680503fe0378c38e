"""OpenLineage events: building, storing, the lineage graph, and posting to an HTTP endpoint."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from catalog_testdata import RUN_1, RUN_2, RUN_3, SM3_ABC, SM3_EMPTY, make_contract
from openlineage.client.event_v2 import RunEvent
from openlineage.client.serde import Serde

import catalog
from catalog import LAKEHOUSE_NAMESPACE as LAKE
from catalog import LANDING_NAMESPACE as LAND
from catalog import LineageDataset

T0 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


def _raw(digest: str) -> LineageDataset:
    return catalog.landing_dataset(
        "SCJG-0001", f"{digest}.csv", fields=[("统一社会信用代码", "string", None)]
    )


def _table(name: str = "enterprise_registry", **kw) -> LineageDataset:
    return catalog.table_dataset(
        name, [("uscc", "string", "统一社会信用代码"), ("ent_name", "string", "企业名称")], **kw
    )


def _ingest_event(event_type: str, run_id: str, digest: str, t: datetime, **kw) -> RunEvent:
    out = _table(
        column_lineage={
            "uscc": [(LAND, f"SCJG-0001/{digest}.csv", "统一社会信用代码")],
            "ent_name": [(LAND, f"SCJG-0001/{digest}.csv", "企业名称")],
        },
        version="0",
        row_count=1000,
        size_bytes=52_311,
    )
    return catalog.build_run_event(
        event_type=event_type,
        run_id=run_id,
        job_name="ingest.enterprise_registry",
        inputs=[_raw(digest)],
        outputs=[out],
        event_time=t,
        **kw,
    )


# --- building ---------------------------------------------------------------------------------
def test_build_run_event_facets():
    ev = _ingest_event("complete", RUN_1, SM3_ABC, T0, engine=("duckdb", "1.4.0"), sql="SELECT 1")
    d = Serde.to_dict(ev)
    assert d["eventType"] == "COMPLETE"
    assert d["eventTime"] == "2025-06-01T02:00:00+00:00"
    assert d["run"]["runId"] == RUN_1
    assert d["job"]["namespace"] == "govdx"
    assert d["job"]["name"] == "ingest.enterprise_registry"
    assert d["schemaURL"].endswith("#/$defs/RunEvent")
    assert d["run"]["facets"]["processing_engine"]["name"] == "duckdb"
    assert d["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    assert d["job"]["facets"]["sql"]["query"] == "SELECT 1"
    assert "errorMessage" not in d["run"]["facets"]

    (inp,) = d["inputs"]
    assert (inp["namespace"], inp["name"]) == ("govdx-landing", f"SCJG-0001/{SM3_ABC}.csv")
    (out,) = d["outputs"]
    assert (out["namespace"], out["name"]) == ("govdx-lakehouse", "enterprise_registry")
    schema = out["facets"]["schema"]
    assert schema["_schemaURL"].endswith("SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet")
    assert schema["fields"] == [
        {
            "name": "uscc",
            "type": "string",
            "description": "统一社会信用代码",
            "ordinal_position": 1,
        },
        {"name": "ent_name", "type": "string", "description": "企业名称", "ordinal_position": 2},
    ]
    cl = out["facets"]["columnLineage"]["fields"]
    assert cl["uscc"]["inputFields"] == [
        {
            "namespace": "govdx-landing",
            "name": f"SCJG-0001/{SM3_ABC}.csv",
            "field": "统一社会信用代码",
        }
    ]
    assert out["facets"]["version"]["datasetVersion"] == "0"
    stats = out["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["size"]) == (1000, 52_311)


def test_fail_event_carries_the_error():
    try:
        raise ValueError("第 7 行 uscc 校验位错误")
    except ValueError as exc:
        ev = catalog.fail_event_from_exception(
            exc, run_id=RUN_2, job_name="ingest.enterprise_registry", inputs=[_raw(SM3_ABC)]
        )
    facet = Serde.to_dict(ev)["run"]["facets"]["errorMessage"]
    assert facet["message"] == "ValueError: 第 7 行 uscc 校验位错误"
    assert facet["programmingLanguage"].startswith("PYTHON 3.")
    assert "raise ValueError" in facet["stackTrace"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"event_type": "DONE"}, "event_type 'DONE'", id="unknown-type"),
        pytest.param({"run_id": "run-42"}, "not a UUID", id="run-id"),
        pytest.param({"event_time": datetime(2025, 1, 1)}, "naive", id="naive-time"),
        pytest.param({"event_type": "FAIL"}, "FAIL event needs error_message", id="fail-no-error"),
        pytest.param(
            {"outputs": [_table(column_lineage={"missing": [(LAND, "x", "y")]})]},
            "'missing', which is not in its schema",
            id="column-lineage-field",
        ),
        pytest.param(
            {"inputs": [_table(column_lineage={"uscc": [(LAND, "x", "y")]})]},
            "belongs on outputs",
            id="column-lineage-on-input",
        ),
    ],
)
def test_build_run_event_refuses(kw, match):
    args = {
        "event_type": "START",
        "run_id": RUN_1,
        "job_name": "ingest.x",
        "inputs": [],
        "outputs": [],
        "event_time": T0,
    }
    args.update(kw)
    with pytest.raises(catalog.CatalogError, match=match):
        catalog.build_run_event(**args)


def test_new_run_id_is_a_time_ordered_uuid7():
    a, b = catalog.new_run_id(), catalog.new_run_id()
    assert uuid.UUID(a).version == 7 and uuid.UUID(b).version == 7
    assert a != b


# --- storing ----------------------------------------------------------------------------------
def test_record_lineage_object_and_dict(session):
    ev = _ingest_event("START", RUN_1, SM3_ABC, T0)
    row = catalog.record_lineage(session=session, event=ev)
    assert (row.run_id, row.event_type, row.job_namespace, row.job_name) == (
        RUN_1,
        "START",
        "govdx",
        "ingest.enterprise_registry",
    )
    assert row.event_time == T0
    assert json.loads(row.payload) == Serde.to_dict(ev)
    assert json.loads(row.inputs) == [f"govdx-landing/SCJG-0001/{SM3_ABC}.csv"]
    assert json.loads(row.outputs) == ["govdx-lakehouse/enterprise_registry"]
    assert sorted((r.direction, r.namespace) for r in row.datasets) == [
        ("input", "govdx-landing"),
        ("output", "govdx-lakehouse"),
    ]
    # the JSON form an OpenLineage endpoint receives is accepted too (times with 'Z')
    posted = json.loads(Serde.to_json(_ingest_event("COMPLETE", RUN_1, SM3_ABC, T0)))
    posted["eventTime"] = "2025-06-01T10:00:05+08:00"
    row2 = catalog.record_lineage(session=session, event=posted)
    assert row2.event_time == T0 + timedelta(seconds=5)
    assert [e.event_type for e in catalog.lineage_events(session=session, run_id=RUN_1)] == [
        "START",
        "COMPLETE",
    ]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(lambda d: d["run"].pop("runId"), "'run.runId' is missing", id="no-run-id"),
        pytest.param(lambda d: d.pop("eventTime"), "'eventTime' is missing", id="no-time"),
        pytest.param(lambda d: d["job"].pop("name"), "'job.name' is missing", id="no-job"),
        pytest.param(
            lambda d: d.update(eventTime="2025-06-01T02:00:00"), "has no time zone", id="naive"
        ),
        pytest.param(lambda d: d.update(eventType="FINISHED"), "'FINISHED'", id="bad-type"),
        pytest.param(lambda d: d["outputs"].append("x"), "outputs.1 is not an object", id="ds"),
    ],
)
def test_record_lineage_refuses_malformed(session, mutate, match):
    d = Serde.to_dict(_ingest_event("START", RUN_1, SM3_ABC, T0))
    mutate(d)
    with pytest.raises(catalog.CatalogError, match=match):
        catalog.record_lineage(session=session, event=d)


@pytest.fixture
def lineage_world(session):
    """enterprise_registry (SCJG-0001) fed by two raw files; read by a derived table, a sandbox
    job and a report; plus a failed run and START events that must not count as lineage."""
    catalog.upsert_dataset(session=session, contract=make_contract())
    catalog.upsert_dataset(
        session=session,
        contract=make_contract(
            code="XYD-0001",
            name="credit_features",
            title="信易贷企业特征",
            department={"code": "DSJJ", "name": "大数据局"},
        ),
    )
    rec = lambda ev: catalog.record_lineage(session=session, event=ev)  # noqa: E731
    rec(_ingest_event("START", RUN_1, SM3_ABC, T0))
    rec(_ingest_event("COMPLETE", RUN_1, SM3_ABC, T0 + timedelta(minutes=1)))
    rec(_ingest_event("START", RUN_2, SM3_EMPTY, T0 + timedelta(days=30)))
    rec(_ingest_event("COMPLETE", RUN_2, SM3_EMPTY, T0 + timedelta(days=30, minutes=1)))
    failed = "0190b4cb-0000-7000-8000-000000000004"
    rec(_ingest_event("START", failed, "f" * 64, T0 + timedelta(days=31)))
    rec(
        _ingest_event(
            "FAIL", failed, "f" * 64, T0 + timedelta(days=31, minutes=1), error_message="bad file"
        )
    )
    derive = catalog.build_run_event(
        event_type="COMPLETE",
        run_id=RUN_3,
        job_name="derive.credit_features",
        inputs=[_table(), catalog.table_dataset("tax_registry")],
        outputs=[_table("credit_features")],
        event_time=T0 + timedelta(days=32),
    )
    rec(derive)
    sandbox_run = "0190b4cc-0000-7000-8000-000000000005"
    rec(
        catalog.build_run_event(
            event_type="COMPLETE",
            run_id=sandbox_run,
            job_name="sandbox.psi",
            inputs=[_table()],
            outputs=[LineageDataset(catalog.SANDBOX_NAMESPACE, "job-17")],
            event_time=T0 + timedelta(days=33),
        )
    )
    report_run = "0190b4cd-0000-7000-8000-000000000006"
    rec(
        catalog.build_run_event(
            event_type="COMPLETE",
            run_id=report_run,
            job_name="report.sharing_rate",
            inputs=[_table()],
            outputs=[],
            event_time=T0 + timedelta(days=34),
        )
    )
    session.commit()
    return {"failed": failed, "sandbox": sandbox_run, "report": report_run}


def test_lineage_graph_upstream_and_downstream(session, lineage_world):
    g = catalog.lineage_graph(session=session, code="SCJG-0001")
    assert (g.code, g.namespace, g.name) == ("SCJG-0001", LAKE, "enterprise_registry")
    assert [(e.namespace, e.name, e.run_id, e.code) for e in g.upstream] == [
        (LAND, f"SCJG-0001/{SM3_ABC}.csv", RUN_1, None),
        (LAND, f"SCJG-0001/{SM3_EMPTY}.csv", RUN_2, None),
    ]
    assert g.upstream[0].event_time == T0 + timedelta(minutes=1)
    assert [(e.namespace, e.name, e.code, e.job_name) for e in g.downstream] == [
        (LAKE, "credit_features", "XYD-0001", "derive.credit_features"),
        ("govdx-sandbox", "job-17", None, "sandbox.psi"),
        (None, None, None, "report.sharing_rate"),
    ]
    d = g.to_dict()
    json.dumps(d, ensure_ascii=False)
    assert d["downstream"][2]["run_id"] == lineage_world["report"]

    up = catalog.lineage_graph(session=session, code="XYD-0001")
    assert [(e.namespace, e.name, e.code) for e in up.upstream] == [
        (LAKE, "enterprise_registry", "SCJG-0001"),
        (LAKE, "tax_registry", None),
    ]
    assert up.downstream == []


def test_lineage_events_by_dataset(session, lineage_world):
    events = catalog.lineage_events(session=session, dataset="SCJG-0001")
    assert len(events) == 9  # every event touches enterprise_registry
    assert [e.event_type for e in events][:2] == ["START", "COMPLETE"]
    assert [e.job_name for e in catalog.lineage_events(session=session, dataset="XYD-0001")] == [
        "derive.credit_features"
    ]
    failed = catalog.lineage_events(session=session, run_id=lineage_world["failed"])
    assert [e.event_type for e in failed] == ["START", "FAIL"]
    assert json.loads(failed[1].payload)["run"]["facets"]["errorMessage"]["message"] == "bad file"
    with pytest.raises(catalog.DatasetNotFound):
        catalog.lineage_events(session=session, dataset="NOPE")
    with pytest.raises(catalog.DatasetNotFound):
        catalog.lineage_graph(session=session, code="NOPE")


# --- emitting ---------------------------------------------------------------------------------
class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict]]] = []
    status = 201

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    handler = type("Handler", (_Collector,), {"received": [], "status": 201})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_emitter_posts_the_event(endpoint):
    url, handler = endpoint
    ev = _ingest_event("COMPLETE", RUN_1, SM3_ABC, T0)
    with catalog.LineageEmitter(url) as em:
        assert em.enabled
        assert em.emit(ev) is True
    assert handler.received == [("/api/v1/lineage", Serde.to_dict(ev))]


def test_emitter_logs_and_survives_http_errors(endpoint, caplog):
    url, handler = endpoint
    handler.status = 400
    ev = _ingest_event("START", RUN_1, SM3_ABC, T0)
    with caplog.at_level(logging.WARNING, logger="catalog._lineage"):
        assert catalog.LineageEmitter(url, retries=0).emit(ev) is False
    assert len(handler.received) == 1
    assert f"OpenLineage event START of run {RUN_1} not posted to {url}" in caplog.text


def test_emitter_survives_unreachable_host(caplog):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with caplog.at_level(logging.WARNING, logger="catalog._lineage"):
        ok = catalog.LineageEmitter(url, retries=0, timeout=2).emit(
            _ingest_event("START", RUN_1, SM3_ABC, T0)
        )
    assert ok is False
    assert "not posted" in caplog.text


def test_emitter_without_url_or_with_bad_url_is_a_no_op(caplog):
    ev = _ingest_event("START", RUN_1, SM3_ABC, T0)
    assert catalog.LineageEmitter(None).enabled is False
    assert catalog.LineageEmitter(None).emit(ev) is False
    with caplog.at_level(logging.WARNING, logger="catalog._lineage"):
        bad = catalog.LineageEmitter("not a url")
    assert bad.enabled is False
    assert "'not a url' is not usable" in caplog.text
    assert bad.emit(ev) is False


def test_emitter_uses_a_given_transport():
    sent = []

    class Memory:
        def emit(self, event):
            sent.append(event)

        def close(self, timeout=-1):
            return True

    ev = _ingest_event("START", RUN_1, SM3_ABC, T0)
    em = catalog.LineageEmitter(None, transport=Memory())
    assert em.enabled and em.emit(ev) is True
    assert sent == [ev]
