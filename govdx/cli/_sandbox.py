"""``govdx sandbox`` (沙箱作业) and ``govdx users`` (用户).

The acting user is ``--user NAME`` or ``GOVDX_USER``. Every command takes ``--json``.

Examples::

    govdx users add swj_steward --role steward --department SWJ
    govdx sandbox submit job.yaml --user bank
    govdx sandbox approve JOB_ID --user swj_steward
    govdx sandbox worker --once
    govdx sandbox result JOB_ID --user bank --out response.bin
    govdx sandbox budget --requester bdb_analyst --dataset RSJ-0001
    govdx sandbox he-stock make --dataset SWJ-0001 --packs 2 --user swj_steward
    govdx sandbox he-stock list --user swj_steward
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from govdx import GovdxError
from govdx.cli._common import console, fail, get_settings, print_json

sandbox_app = typer.Typer(
    help="Sandbox jobs (沙箱作业): submit, approve, run, fetch results.\n\n"
    "Examples:\n\n"
    "  govdx sandbox submit job.yaml --user bank\n\n"
    "  govdx sandbox approve JOB_ID --user swj_steward\n\n"
    "  govdx sandbox worker --once\n\n"
    "  govdx sandbox result JOB_ID --user bank --out response.bin",
    no_args_is_help=True,
)
users_app = typer.Typer(
    help="Users and roles (用户与角色): steward, reviewer, requester, analyst, admin.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (UTF-8) for scripts.")]
UserOpt = Annotated[
    str | None,
    typer.Option("--user", "-u", help="Acting user (default: $GOVDX_USER).", show_default=False),
]
JobArg = Annotated[str, typer.Argument(help="Job id (作业编号).")]


@sandbox_app.callback()
def _sandbox_group() -> None:
    """Sandbox jobs (沙箱作业)."""


@users_app.callback()
def _users_group() -> None:
    """Users (用户)."""


def _box():
    from sandbox import Sandbox

    settings = get_settings()
    settings.ensure_home()
    return Sandbox(settings)


def _acting(user: str | None) -> str | None:
    return user or os.environ.get("GOVDX_USER") or None


def _out(data: Any, as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        _print_job(data) if isinstance(data, dict) and "state" in data else print_json(data)


def _print_job(job: dict[str, Any]) -> None:
    t = Table(title=f"job {job['id']}", show_header=False)
    for key in (
        "state",
        "requester",
        "dataset",
        "version",
        "computation",
        "purpose",
        "legal_basis",
        "reason",
    ):
        if key in job and job[key] is not None:
            value = f"{job[key]} ({job.get('state_zh')})" if key == "state" else str(job[key])
            t.add_row(key, value)
    # what approvers judge: every param (filters, group-by, ε, ...) and the real request size
    for name, value in (job.get("params") or {}).items():
        if name == "public_key" and isinstance(value, str) and len(value) > 60:
            value = f"{value[:40]}… ({len(value)} chars)"
        t.add_row(f"params.{name}", json.dumps(value, ensure_ascii=False, default=str))
    if job.get("request_items") is not None:
        t.add_row("request_items", f"{job['request_items']} (distinct items in the request)")
    if job.get("decision"):
        d = job["decision"]
        t.add_row(
            "approvals", f"{d.get('approvals_required')} (reviewer: {d.get('reviewer_required')})"
        )
    for a in job.get("approvals", []):
        t.add_row("approval", f"{a['decision']} by {a['approver']} ({a['role']})")
    if job.get("result"):
        t.add_row("result", f"{job['result']['bytes']} bytes, SM3 {job['result']['digest']}")
    console.print(t)


def _run(fn, as_json: bool) -> None:
    try:
        data = fn()
    except GovdxError as exc:
        if as_json:
            print_json({"error": type(exc).__name__, "message": str(exc)})
            raise typer.Exit(1) from None
        fail(exc)
    else:
        _out(data, as_json)


def _for_people(fn, as_json: bool) -> Any:
    """With ``--json``: run ``fn``, print its value as JSON (or the error) and exit. Otherwise
    return ``fn()`` for the caller to print for people; a GovdxError exits 1 with its message."""
    if as_json:
        _run(fn, True)
        raise typer.Exit(0)
    try:
        return fn()
    except GovdxError as exc:
        fail(exc)


@sandbox_app.command("submit")
def submit_command(
    spec: Annotated[Path, typer.Argument(help="Job spec, YAML or JSON (作业描述).")],
    user: UserOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show the policy decision.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job spec; prints the job (its id is unguessable; keep it)."""
    from sandbox import load_job_spec

    def go() -> Any:
        job_spec = load_job_spec(spec)
        box = _box()
        try:
            if dry_run:
                return box.evaluate(job_spec, user=_acting(user)).to_dict()
            return box.submit(job_spec, user=_acting(user))
        finally:
            box.close()

    _run(go, as_json)


def _with_box(method: str, *args: Any, **kwargs: Any) -> Any:
    box = _box()
    try:
        return getattr(box, method)(*args, **kwargs)
    finally:
        box.close()


@sandbox_app.command("list")
def list_command(
    user: UserOpt = None,
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs the acting user may see, newest first."""

    def go() -> Any:
        return _with_box("list_jobs", user=_acting(user), state=state)

    jobs = _for_people(go, as_json)
    t = Table("id", "state", "requester", "dataset", "version", "computation", "created")
    for j in jobs:
        t.add_row(
            j["id"],
            f"{j['state']} {j['state_zh']}",
            j["requester"],
            j["dataset"],
            str(j["version"]),
            j["computation"],
            j["created_at"][:19],
        )
    console.print(t)


@sandbox_app.command("show")
def show_command(job_id: JobArg, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """A job: spec, policy decision, approvals, transitions, releases."""
    _run(lambda: _with_box("show", job_id, user=_acting(user) or ""), as_json)


@sandbox_app.command("approve")
def approve_command(
    job_id: JobArg,
    user: UserOpt = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Note kept with the approval.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a job (审批通过): steward of the owning department; reviewer for 双人复核."""
    _run(lambda: _with_box("approve", job_id, user=_acting(user), reason=reason), as_json)


@sandbox_app.command("reject")
def reject_command(
    job_id: JobArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (驳回理由); required.")],
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a job awaiting approval (驳回)."""
    _run(lambda: _with_box("reject", job_id, user=_acting(user), reason=reason), as_json)


@sandbox_app.command("cancel")
def cancel_command(
    job_id: JobArg,
    user: UserOpt = None,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a job (撤销): its requester or an admin."""
    _run(lambda: _with_box("cancel", job_id, user=_acting(user), reason=reason), as_json)


@sandbox_app.command("run")
def run_command(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Run one approved (or failed) job now, in a worker process with the policy's limits.

    Exit status: 0 when the job succeeded, 1 when it failed or was refused (scripts and cron
    can tell); the job is printed either way.
    """
    done: dict[str, Any] = {}

    def go() -> Any:
        done.update(_with_box("run", job_id))
        return done

    _run(go, as_json)
    if done.get("state") == "failed":
        raise typer.Exit(1)


@sandbox_app.command("worker")
def worker_command(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between passes.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """The worker loop: fail lost runs, expire stale jobs, run approved jobs; one line per job
    it ran (the whole jobs with --json)."""

    def one_pass() -> None:
        if as_json:
            _run(lambda: _with_box("work_once"), True)
            return
        try:
            jobs = _with_box("work_once")
        except GovdxError as exc:
            fail(exc)
            return
        for j in jobs:
            why = f": {j['reason']}" if j.get("reason") else ""
            console.print(
                f"job {j['id']} {j['computation']} on {j['dataset']}: {j['state']}{why}",
                highlight=False,
            )
        if not jobs:
            console.print("no approved job to run (无待运行作业)")

    if once:
        one_pass()
        return
    while True:  # pragma: no cover - long-running
        one_pass()
        time.sleep(interval)


@sandbox_app.command("result")
def result_command(
    job_id: JobArg,
    user: UserOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the result bytes here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch (and release) a job's result; only its requester may. JSON results print unless
    --out is given; binary results (PSI responses) need --out."""

    def go() -> Any:
        bundle = _with_box("result", job_id, user=_acting(user))
        info: dict[str, Any] = {
            "id": bundle.job_id,
            "digest": bundle.digest,
            "bytes": len(bundle.data),
            "media_type": bundle.media_type,
        }
        if out is not None:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(bundle.data)
            info["out"] = str(out)
        elif bundle.media_type == "application/json":
            import json

            info["result"] = json.loads(bundle.data)
        else:
            raise _usage_error(f"result of job {job_id} is {bundle.media_type}; pass --out FILE")
        return info

    _run(go, as_json)


def _usage_error(msg: str) -> GovdxError:
    from sandbox import SandboxError

    return SandboxError(msg)


@users_app.command("add")
def users_add_command(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[
        str, typer.Option("--role", help="steward | reviewer | requester | analyst | admin")
    ],
    department: Annotated[
        str | None, typer.Option("--department", help="Department code (部门代码).")
    ] = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user (添加用户): by an admin (--user ADMIN or GOVDX_USER).

    Until the first admin exists the operator may add users without --user (bootstrap: the
    operator's shell account can read this home anyway); afterwards an admin must act, and any
    acting user must be an admin. Example: govdx users add bank1 --role requester --user admin1
    """

    def go() -> Any:
        return _with_box("add_user_by", _acting(user), name, role, department)

    u = _for_people(go, as_json)
    dept = f", department {u['department']}" if u["department"] else ""
    console.print(f"user {u['name']!r} added (已添加用户): role {u['role']}{dept}", highlight=False)


@users_app.command("disable")
def users_disable_command(
    name: Annotated[str, typer.Argument(help="Login name (用户名).")],
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disable a user (停用用户): no login, its API tokens refused within seconds, no CLI acts;
    its jobs, approvals and audit entries stay. An admin acts. Example:
    govdx users disable bank1 --user admin1
    """
    _run(lambda: _with_box("set_disabled", name, True, actor=_acting(user)), as_json)


@users_app.command("enable")
def users_enable_command(
    name: Annotated[str, typer.Argument(help="Login name (用户名).")],
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enable a disabled user again (启用用户). An admin acts."""
    _run(lambda: _with_box("set_disabled", name, False, actor=_acting(user)), as_json)


@users_app.command("list")
def users_list_command(as_json: JsonOpt = False) -> None:
    """All users, with the time each was disabled (停用) if it was."""
    users = _for_people(lambda: _with_box("list_users"), as_json)
    t = Table("name", "role", "department", "created", "disabled")
    for u in users:
        t.add_row(
            u["name"],
            u["role"],
            u["department"] or "—",
            (u["created_at"] or "")[:19],
            (u["disabled_at"] or "")[:19] or "—",
        )
    console.print(t)


@sandbox_app.command("budget")
def budget_command(
    requester: Annotated[
        str | None, typer.Option("--requester", help="Only this requester (需求方).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Only this dataset code (信息资源代码).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Privacy budgets (隐私预算): ε/δ cap, spent, held, forfeited and remaining per (requester,
    dataset), exact rationals (docs/dp.md).

    spent: released results (已发布). held: reserved or running by jobs that may still release
    (已预留). forfeited: runs that failed and were re-run or cancelled — charged for good, nothing
    released (已扣除未发布). remaining = cap − spent − held − forfeited. An unknown requester or
    dataset is refused (exit 1)."""
    from sandbox import budget_report

    def go() -> Any:
        box = _box()
        try:
            return budget_report(box.factory, requester=requester, dataset=dataset)
        finally:
            box.close()

    rows = _for_people(go, as_json)
    if not rows:  # a known requester / dataset (else refused above) that has used no ε yet
        scope = (f" by {requester}" if requester else "") + (f" on {dataset}" if dataset else "")
        console.print(f"no DP budget used yet{scope} (尚未使用差分隐私预算)", highlight=False)
        return
    # the forfeited column only when some run was forfeited (keeps the table within 80 columns)
    forfeits = any(r["epsilon_forfeited"] != "0" for r in rows)
    t = Table("requester", "dataset", "ε cap", "ε spent", "ε held")
    if forfeits:
        t.add_column("ε forfeited")
    for name in ("ε remaining", "δ cap", "δ remaining"):
        t.add_column(name)
    for r in rows:
        t.add_row(
            r["requester"],
            r["dataset"],
            r["epsilon_cap"],
            r["epsilon_spent"],
            r["epsilon_held"],
            *([r["epsilon_forfeited"]] if forfeits else []),
            f"{r['epsilon_remaining']} (≈{r['epsilon_remaining_float']:.4g})",
            r["delta_cap"],
            r["delta_remaining"],
        )
    console.print(t)


# --- key stock for psi_sum joins (docs/he.md "Key stock") ----------------------------------------
he_stock_app = typer.Typer(
    help="Key stock for psi_sum joins (密钥储备): single-use department key packs made ahead.\n\n"
    "Examples:\n\n"
    "  govdx sandbox he-stock make --dataset SWJ-0001 --packs 2 --user swj_steward\n\n"
    "  govdx sandbox he-stock list --user swj_steward",
    no_args_is_help=True,
)
sandbox_app.add_typer(he_stock_app, name="he-stock")


@he_stock_app.callback()
def _he_stock_group() -> None:
    """Key stock (密钥储备)."""


@he_stock_app.command("make")
def he_stock_make_command(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset code (信息资源代码).")],
    packs: Annotated[int, typer.Option("--packs", min=1, max=64, help="Packs to make.")] = 1,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=1,
            help="Obfuscators per pack (values a join encrypts); default: the distinct "
            "identifiers of the current version.",
        ),
    ] = None,
    bits: Annotated[int, typer.Option("--bits", help="Key bits: 2048 or 3072.")] = 2048,
    processes: Annotated[
        int, typer.Option("--processes", min=1, max=64, help="Worker processes.")
    ] = 2,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make key packs for a dataset's psi_sum joins (steward of its department or admin);
    progress on stderr. Run it nightly or after each table version."""
    from govdx.cli._common import err_console
    from sandbox._he_stock import make_stock

    started = time.monotonic()
    last, begin = [0.0], [started]  # last line printed, start of the current pack

    def progress(i: int, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            rate = done / max(now - begin[0], 1e-9)
            err_console.print(
                f"pack {i + 1}/{packs}: {done}/{total} obfuscators ({rate:.0f}/s) (预计算)",
                highlight=False,
            )
            if done == total:
                begin[0] = now

    def go() -> Any:
        box = _box()
        try:
            made = make_stock(
                box,
                user=_acting(user),
                dataset=dataset,
                packs=packs,
                size=size,
                bits=bits,
                processes=processes,
                progress=progress,
            )
        finally:
            box.close()
        return {"made": made, "seconds": round(time.monotonic() - started, 1)}

    doc = _for_people(go, as_json)
    for p in doc["made"]:
        console.print(f"made {p['pack_id']} ({p['bits']} bits, {p['count']} obfuscators)")
    console.print(f"{len(doc['made'])} pack(s) in {doc['seconds']} s")


@he_stock_app.command("list")
def he_stock_list_command(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Only this dataset code.")
    ] = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Packs in the stock: per dataset, bits, size, created (stewards: their department's)."""
    from sandbox._he_stock import list_stock

    def go() -> Any:
        box = _box()
        try:
            return list_stock(box, user=_acting(user), dataset=dataset)
        finally:
            box.close()

    rows = _for_people(go, as_json)
    t = Table("dataset", "pack", "bits", "obfuscators", "MB", "created")
    for r in rows:
        t.add_row(
            r["dataset"],
            r["pack_id"],
            str(r["bits"]),
            str(r["count"]),
            f"{r['bytes'] / 1e6:.1f}",
            r["created"][:19],
        )
    console.print(t)
