"""Renderings: JSON, CSV, XLSX read back; the HTML report opened in headless Chromium (Debian's
``chromium``) over the DevTools protocol — no console error, charts drawn, screenshot not blank."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reports import (
    ReportDefinitionError,
    render_csv,
    render_html,
    render_json,
    security_coverage,
    sharing_rate,
    write_report,
)

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


def test_json_keeps_exact_fractions(scenario, session):
    d = json.loads(render_json(sharing_rate(session=session)))
    fig = {f["key"]: f for f in d["figures"]}
    assert fig["request_satisfaction"]["value"] == {
        "numerator": 3,
        "denominator": 7,
        "fraction": "3/7",
        "value": 3 / 7,
        "display": "42.9%",
    }
    assert fig["median_decision_seconds"]["value"] == {"fraction": "1350/1", "value": 1350.0}
    assert fig["actual_share_rate"]["definition"].startswith("实际共享率")
    gaj = next(r for r in d["tables"][0]["rows"] if r["department"] == "GAJ")
    assert gaj["catalog_share_rate"] == {
        "numerator": 0,
        "denominator": 0,
        "fraction": None,
        "value": None,
        "display": "—",
    }


def test_csv_columns_and_zero_of_zero(scenario, session):
    text = render_csv(sharing_rate(session=session))
    rows = list(csv.DictReader(io.StringIO(text)))
    swj = next(r for r in rows if r["department"] == "SWJ")
    assert (
        swj["request_satisfaction"],
        swj["request_satisfaction_numerator"],
        swj["request_satisfaction_denominator"],
    ) == ("66.7%", "2", "3")
    gaj = next(r for r in rows if r["department"] == "GAJ")
    assert (gaj["catalog_share_rate"], gaj["catalog_share_rate_value"]) == ("—", "")
    with pytest.raises(ReportDefinitionError, match="no table 'nope'"):
        render_csv(sharing_rate(session=session), table="nope")


def test_xlsx_sheets_and_numbers(scenario, session, tmp_path):
    from openpyxl import load_workbook

    path = tmp_path / "s.xlsx"
    assert write_report(sharing_rate(session=session), "xlsx", path) > 1000
    wb = load_workbook(path)
    assert wb.sheetnames == ["Summary", "departments", "rejection_reasons", "trend", "Definitions"]
    ws = wb["departments"]
    header = [c.value for c in ws[1]]
    i = header.index("Request satisfaction (需求满足率)")
    swj = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == "SWJ")
    assert swj[i] == pytest.approx(2 / 3) and swj[i + 1 : i + 3] == (2, 3)
    gaj = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == "GAJ")
    assert gaj[i : i + 3] == ("—", 0, 0)
    assert ws.cell(2, i + 1).number_format == "0.0%"


def test_cli_report_writes_files(scenario, tmp_path, monkeypatch):
    import typer

    from govdx.cli._report import report_command

    app = typer.Typer()
    app.command()(report_command)
    monkeypatch.setenv("GOVDX_HOME", str(scenario.settings.home))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["sharing-rate", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sharing-rate.csv").read_bytes().startswith(b"\xef\xbb\xbfdepartment,")
    res = CliRunner().invoke(app, ["sharing-rate", "--format", "json", "--department", "RSJ"])
    assert json.loads(res.output)["figures"][2]["value"]["fraction"] == "0/1"
    res = CliRunner().invoke(app, ["quality", "--period", "2026-13"])
    assert (
        res.exit_code == 1 and "'2026-13'" in res.output and "month must be in 1..12" in res.output
    )
    res = CliRunner().invoke(app, ["duplicate-collection", "--format", "html", "--out", "d.html"])
    assert res.exit_code == 0 and (tmp_path / "d.html").read_text(encoding="utf-8").startswith(
        "<!DOCTYPE html>"
    )
    res = CliRunner().invoke(app, ["security-coverage"])
    assert res.exit_code == 0 and "Two-person approval" in res.output


def test_html_is_self_contained(scenario, session):
    page = render_html(sharing_rate(session=session))
    assert (
        "<script" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        and "https://" not in page
    )
    assert page.count("<svg") == 3 and 'class="bar"' in page
    assert "— (0 of 0)" in page  # GAJ
    for definition in ("目录共享率 =", "实际共享率 =", "需求满足率 =", "开放率 ="):
        assert definition in page


# --- Chromium ------------------------------------------------------------------------------------
class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 << 20)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name: str, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == name:
                return e
        while time.monotonic() < end:
            msg = json.loads(self.ws.recv(timeout=end - time.monotonic()))
            self.events.append(msg)
            if msg.get("method") == name:
                return msg
        raise TimeoutError(name)

    def close(self) -> None:
        self.ws.close()


PIXEL_STATS = """
new Promise((resolve) => {
  const img = new Image();
  img.onload = () => {
    const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0, s = 0, s2 = 0; const colours = new Set();
    for (let i = 0; i < d.length; i += 16) {
      const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      n++; s += y; s2 += y * y; if (colours.size < 5000) colours.add(d[i] << 16 | d[i+1] << 8 | d[i+2]);
    }
    const m = s / n;
    resolve(JSON.stringify({w: img.width, h: img.height, variance: s2 / n - m * m, colours: colours.size}));
  };
  img.onerror = () => resolve(JSON.stringify({error: 'png did not load'}));
  img.src = 'data:image/png;base64,' + window.__png;
})
"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed "
    "(apt-get install -y chromium); the HTML report cannot be opened headless",
)
def test_html_opens_in_headless_chromium(scenario, session, lake, tmp_path):
    import catalog
    from sandbox import Auditor

    sharing = tmp_path / "sharing-rate.html"
    write_report(sharing_rate(session=session), "html", sharing)
    factory = catalog.open_catalog(scenario.settings.catalog_db_url)
    sec = tmp_path / "security-coverage.html"
    write_report(
        security_coverage(
            session=session,
            lakehouse=lake,
            verify_audit=Auditor(factory, scenario.settings.keys_dir).verify,
        ),
        "html",
        sec,
    )
    factory.kw["bind"].dispose()
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1200,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        cdp = DevTools(pages[0]["webSocketDebuggerUrl"])
        try:
            for path, bars in ((sharing, 10), (sec, 6)):
                cdp.events.clear()
                for domain in ("Page", "Runtime", "Log"):
                    cdp.call(f"{domain}.enable")
                cdp.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=1200,
                    height=900,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                cdp.call("Page.navigate", url=path.as_uri())
                cdp.wait_event("Page.loadEventFired")
                time.sleep(0.3)
                errors = [
                    e
                    for e in cdp.events
                    if e.get("method") == "Runtime.exceptionThrown"
                    or (
                        e.get("method") == "Runtime.consoleAPICalled"
                        and e["params"]["type"] in ("error", "assert")
                    )
                    or (
                        e.get("method") == "Log.entryAdded"
                        and e["params"]["entry"]["level"] == "error"
                    )
                ]
                assert errors == [], errors
                drawn = cdp.call(
                    "Runtime.evaluate",
                    expression=(
                        "JSON.stringify({svgs: document.querySelectorAll('svg.chart').length, "
                        "bars: document.querySelectorAll('svg.chart rect.bar').length, "
                        "w: document.querySelector('svg.chart').getBoundingClientRect().width, "
                        "title: document.title})"
                    ),
                    returnByValue=True,
                )
                info = json.loads(drawn["result"]["value"])
                assert info["svgs"] >= 1 and info["bars"] >= bars and info["w"] > 500, info
                shot = cdp.call("Page.captureScreenshot", format="png")["data"]
                png = base64.b64decode(shot)
                assert png[:8] == b"\x89PNG\r\n\x1a\n"
                (tmp_path / f"{path.stem}.png").write_bytes(png)
                # decode the screenshot in the browser itself (canvas) and measure it
                cdp.call("Runtime.evaluate", expression=f"window.__png = '{shot}'; 0")
                stats = json.loads(
                    cdp.call(
                        "Runtime.evaluate",
                        expression=PIXEL_STATS,
                        awaitPromise=True,
                        returnByValue=True,
                    )["result"]["value"]
                )
                assert stats.get("w") == 1200 and stats.get("h") == 900, stats
                assert stats["variance"] > 100 and stats["colours"] > 20, stats  # not blank
        finally:
            cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_table_with_out_writes_plain_text(scenario, tmp_path, monkeypatch):
    import typer

    from govdx.cli._report import report_command

    app = typer.Typer()
    app.command()(report_command)
    monkeypatch.setenv("GOVDX_HOME", str(scenario.settings.home))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["sharing-rate", "--format", "table", "--out", "t.txt"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("wrote t.txt (") and "Figure (指标)" not in res.output
    text = (tmp_path / "t.txt").read_text(encoding="utf-8")
    assert "\x1b[" not in text  # plain: no ANSI escape codes
    lines = text.splitlines()
    assert lines[0].startswith("Sharing rate") and "period all time (全部)" in lines[0]
    assert "Figure (指标)" in text and "Definition (口径)" in text and "(3 of 7)" in text
    assert max(len(line) for line in lines) <= 120
    assert len((tmp_path / "t.txt").read_bytes()) == int(
        res.output.split("(")[1].split(" bytes")[0].replace(",", "")
    )
    # without --out the table still goes to the terminal and no file is written
    res = CliRunner().invoke(app, ["sharing-rate", "--department", "RSJ"])
    assert res.exit_code == 0 and "Figure (指标)" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_write_report_table_format(scenario, session, tmp_path):
    rep = sharing_rate(session=session)
    size = write_report(rep, "table", tmp_path / "r.txt")
    text = (tmp_path / "r.txt").read_text(encoding="utf-8")
    assert size == len(text.encode("utf-8")) and "Figure (指标)" in text and "\x1b" not in text
    with pytest.raises(ReportDefinitionError, match="format 'pdf' cannot be written"):
        write_report(rep, "pdf", tmp_path / "r.pdf")


@pytest.mark.parametrize(
    ("period", "message"),
    [
        pytest.param(
            "2027..2026",
            "--period 2027..2026: start 2027-01-01 is after end 2026-12-31, not before it",
            id="years",
        ),
        pytest.param(
            "2026-03..2026-02-28",
            "--period 2026-03..2026-02-28: start 2026-03-01 is after end 2026-02-28",
            id="month-day",
        ),
    ],
)
def test_cli_reversed_period_names_the_given_end(scenario, tmp_path, monkeypatch, period, message):
    import typer

    from govdx.cli._report import report_command

    app = typer.Typer()
    app.command()(report_command)
    monkeypatch.setenv("GOVDX_HOME", str(scenario.settings.home))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["sharing-rate", "--period", period])
    assert res.exit_code == 1
    assert message in " ".join(res.output.split()), res.output  # rich may wrap the line
    # one day on both sides is a valid period, not refused
    assert (
        CliRunner().invoke(app, ["sharing-rate", "--period", "2026-03..2026-03-01"]).exit_code == 0
    )
