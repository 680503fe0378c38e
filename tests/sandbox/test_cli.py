"""The CLI: users, sandbox, client psi and audit apps (mounted here on a test Typer app)."""

from __future__ import annotations

import json
import stat

import pytest
import typer
from sandbox_testdata import publish_dataset, tax_contract, tax_table
from typer.testing import CliRunner

from govdx.cli._audit import audit_app
from govdx.cli._client import client_app
from govdx.cli._sandbox import sandbox_app, users_app

app = typer.Typer()
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(users_app, name="users")
app.add_typer(client_app, name="client")
app.add_typer(audit_app, name="audit")
runner = CliRunner()


def cli(*args: str, user: str | None = None, ok: bool = True):
    env = {"GOVDX_USER": user} if user else {}
    res = runner.invoke(app, list(args), env=env)
    if ok:
        assert res.exit_code == 0, res.output
    return res


@pytest.fixture
def home(settings, ids):
    publish_dataset(
        settings,
        tax_contract(sandbox={"allowed_computations": ["psi"], "psi_max_items": 100}),
        tax_table(ids),
    )
    for name, role, dept in [
        ("bank", "requester", "ICBC"),
        ("st", "steward", "SWJ"),
        ("rv", "reviewer", None),
    ]:
        cli(
            "users",
            "add",
            name,
            "--role",
            role,
            *(["--department", dept] if dept else []),
            "--json",
        )
    return settings


def test_psi_flow_through_the_cli(home, tmp_path, ids):
    ids_csv = tmp_path / "applicants.csv"
    ids_csv.write_text(
        "uscc,name\n" + "".join(f"{x},企业{i}\n" for i, x in enumerate([*ids[:7], "91BAD"])),
        encoding="utf-8",
    )
    state = tmp_path / "psi.state"
    res = cli(
        "client",
        "psi",
        "request",
        "--ids",
        str(ids_csv),
        "--column",
        "uscc",
        "--out",
        str(tmp_path / "req.bin"),
        "--state",
        str(state),
        "--json",
    )
    doc = json.loads(res.output)
    assert (doc["items"], doc["rejected"], doc["rejected_rows"]) == (7, 1, [7])
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    (tmp_path / "job.yaml").write_text(
        "purpose: 银税互动核验\nlegal_basis: 企业授权书\ndataset: SWJ-T001\n"
        "computation: {name: psi, params: {column: taxpayer_id, max_items: 10}}\n"
        "inputs: {request: req.bin}\n",
        encoding="utf-8",
    )
    job = json.loads(
        cli("sandbox", "submit", str(tmp_path / "job.yaml"), "--json", user="bank").output
    )
    jid = job["id"]
    # what an approver sees without --json: the params and the real request size
    shown = " ".join(cli("sandbox", "show", jid, user="st").output.replace("│", " ").split())
    assert 'params.column "taxpayer_id"' in shown and "params.max_items 10" in shown
    assert "request_items 7 (distinct items in the request)" in shown
    res = cli("sandbox", "approve", jid, "--json", user="bank", ok=False)
    assert res.exit_code == 1 and "PermissionDenied" in res.output
    cli("sandbox", "approve", jid, "--json", user="st")
    assert (
        json.loads(cli("sandbox", "approve", jid, "--json", user="rv").output)["state"]
        == "approved"
    )
    line = cli("sandbox", "worker", "--once").output  # one line per job for people
    assert " ".join(line.split()) == f"job {jid} psi on SWJ-T001: succeeded"
    assert cli("sandbox", "worker", "--once").output.startswith("no approved job to run")
    assert json.loads(cli("sandbox", "worker", "--once", "--json").output) == []
    res = cli(
        "sandbox", "result", jid, "--out", str(tmp_path / "resp.bin"), "--json", user="st", ok=False
    )
    assert res.exit_code == 1 and "only to its requester" in res.output
    cli("sandbox", "result", jid, "--out", str(tmp_path / "resp.bin"), "--json", user="bank")
    out = json.loads(
        cli(
            "client",
            "psi",
            "finish",
            "--result",
            str(tmp_path / "resp.bin"),
            "--state",
            str(state),
            "--json",
        ).output
    )
    assert out == {"cardinality": 7}
    listed = json.loads(cli("sandbox", "list", "--json", user="bank").output)
    assert [(j["id"], j["state"]) for j in listed] == [(jid, "released")]
    assert json.loads(cli("audit", "verify", "--json").output)["ok"] is True
    shown = json.loads(cli("audit", "show", "--action", "job.release", "--json").output)
    assert [(e["actor"], e["subject"]) for e in shown] == [("bank", jid)]


def test_missing_user_and_bad_spec(home, tmp_path):
    res = cli("sandbox", "list", "--json", ok=False)
    assert res.exit_code == 1 and "GOVDX_USER" in res.output
    (tmp_path / "bad.yaml").write_text(
        "purpose: 核验核验\nlegal_basis: x1\ndataset: SWJ-T001\n"
        "computation: {name: psi, params: {column: taxpayer_id, max_items: -1}}\n"
        "inputs: {request: r.bin}\n",
        encoding="utf-8",
    )
    res = cli("sandbox", "submit", str(tmp_path / "bad.yaml"), "--json", user="bank", ok=False)
    assert (
        res.exit_code == 1 and "computation.params.max_items" in json.loads(res.output)["message"]
    )
    users = json.loads(cli("users", "list", "--json").output)
    assert [u["name"] for u in users] == ["bank", "rv", "st"]


def test_he_stock_make_and_list_with_roles(home, ids):
    # SWJ-T001 allows psi only: no join could ever use a pack
    res = cli("sandbox", "he-stock", "make", "--dataset", "SWJ-T001", "--json", user="st", ok=False)
    assert res.exit_code == 1 and "SWJ-T001 does not allow psi_sum" in res.output
    publish_dataset(
        home,
        tax_contract(
            sandbox={"allowed_computations": ["psi", "psi_sum"], "psi_max_items": 100},
            code="SWJ-T002",
            name="tax_test_sum",
        ),
        tax_table(ids),
    )
    res = cli(
        "sandbox", "he-stock", "make", "--dataset", "SWJ-T002", "--json", user="bank", ok=False
    )
    assert res.exit_code == 1 and json.loads(res.output)["error"] == "PermissionDenied"
    # no privacy_unit on this contract: the default size (distinct identifiers) is refused
    res = cli("sandbox", "he-stock", "make", "--dataset", "SWJ-T002", "--json", user="st", ok=False)
    assert res.exit_code == 1 and "declares no privacy_unit" in res.output
    res = cli(
        "sandbox", "he-stock", "make", "--dataset", "SWJ-T002", "--size", "20",
        "--processes", "1", "--json", user="st",
    )  # fmt: skip
    assert "pack 1/1: 20/20 obfuscators" in res.stderr  # progress on stderr
    made = json.loads(res.stdout)["made"]
    assert [(m["dataset"], m["bits"], m["count"]) for m in made] == [("SWJ-T002", 2048, 20)]
    listed = json.loads(cli("sandbox", "he-stock", "list", "--json", user="st").output)
    assert listed == made and listed[0]["bytes"] > 20 * 512
    for who in ("rv", "bank"):
        res = cli("sandbox", "he-stock", "list", "--json", user=who, ok=False)
        assert res.exit_code == 1 and "stewards and admins only" in res.output
    res = cli("sandbox", "he-stock", "list", "--dataset", "SWJ-T002", "--json", user="rv", ok=False)
    assert res.exit_code == 1 and "only a steward of SWJ or an admin" in res.output
    shown = json.loads(cli("audit", "show", "--action", "he_stock.make", "--json").output)
    assert [(e["actor"], e["subject"]) for e in shown] == [("st", "dataset:SWJ-T002")]
    assert json.loads(cli("audit", "verify", "--json").output)["ok"] is True
    text = cli("sandbox", "he-stock", "list", user="st").output
    assert made[0]["pack_id"][:12] in text and "2048" in text


@pytest.mark.parametrize("app_name", ["psi-sum", "he-cohort"])
def test_blinded_request_without_a_valid_identifier_is_refused(tmp_path, app_name):
    ids_csv = tmp_path / "ids.csv"
    ids_csv.write_text("uscc\n91350100M000100Y3Y\n\nbad\n", encoding="utf-8")
    out, state = tmp_path / "j.bin", tmp_path / "s.json"
    res = cli(
        "client", app_name, "request", "--ids", str(ids_csv), "--column", "uscc",
        "--out", str(out), "--state", str(state), ok=False,
    )  # fmt: skip
    assert res.exit_code == 1
    assert "no valid identifier in column 'uscc' (2 rejected; first: row 2:" in res.output
    assert not out.exists() and not state.exists()


@pytest.mark.parametrize(("state", "code"), [("failed", 1), ("succeeded", 0)])
def test_sandbox_run_exit_status_follows_the_job(home, monkeypatch, state, code):
    """Scripts and cron must see a failed run: `sandbox run` exits 1 when the job failed."""
    from sandbox import Sandbox

    job = {"id": "J1", "state": state, "reason": "RunError: x" if state == "failed" else None}
    monkeypatch.setattr(Sandbox, "run", lambda self, job_id: dict(job, id=job_id))
    res = cli("sandbox", "run", "J1", "--json", ok=False)
    assert res.exit_code == code
    assert json.loads(res.stdout)["state"] == state
