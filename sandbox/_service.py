"""The sandbox service (沙箱服务): users, job submission, approvals, runs and releases.

:class:`Sandbox` is the one place that writes jobs. Every state change is an optimistic
``UPDATE sandbox_jobs SET state = :to WHERE id = :id AND state = :from`` (two workers cannot
both start a job: the second update matches no row), a row in ``sandbox_job_transitions``,
and — after the transaction commits — an entry in the audit chain. Refusals are audited too,
and their messages name users, jobs, dataset codes and keys, never row values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import catalog
from catalog._db import utcnow
from govdx import Contract, Settings
from govdx._errors import ContractError
from privacy._digest import sm3_hex
from sandbox._audit_store import Auditor
from sandbox._computations import get_computation
from sandbox._errors import (
    InputRefused,
    JobNotFound,
    PermissionDenied,
    PolicyRefused,
    Refused,
    RunError,
    SandboxError,
    TransitionRefused,
    UserError,
)
from sandbox._models import ROLES, Approval, Job, JobTransition, Release, User, new_job_id
from sandbox._policy import PolicyDecision, Usage, evaluate_policy, sandbox_policy
from sandbox._runner import RESULT_FILE, WorkerTask, run_in_worker
from sandbox._spec import JobSpec
from sandbox._states import STATE_ZH, JobState, check_transition

#: Largest input file accepted with a job (bytes).
MAX_INPUT_BYTES = 256 << 20
#: Seconds added to the time limit before a running job whose worker vanished is failed.
LEASE_GRACE_SECONDS = 60.0
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-@")


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


@dataclass(frozen=True)
class ResultBundle:
    """A released result: ``data`` (bytes) and its record (``digest`` SM3 hex, ``media_type``)."""

    job_id: str
    data: bytes
    digest: str
    media_type: str


def usage_since(s: Session, requester: str, code: str, since: datetime) -> Usage:
    """A requester's use of one dataset's sandbox quotas since ``since`` (额度使用).

    Returns:
        :class:`Usage`: ``jobs`` (every job submitted) and ``psi_items`` — the ``max_items``
        declared by the identifier sets sent for intersection: ``psi`` jobs, ``psi_sum`` joins
        and ``he_cohort`` offers (docs/sandbox.md, quotas). The service enforces quotas with it
        and the API reports it (one definition).
    """
    rows = s.execute(
        select(Job.computation, Job.spec_json).where(
            Job.requester == requester, Job.dataset_code == code, Job.created_at >= since
        )
    ).all()
    items = 0
    for comp, spec in rows:
        params = json.loads(spec)["computation"]["params"]
        if (
            comp == "psi"
            or (comp == "psi_sum" and params.get("phase", "join") == "join")
            or (comp == "he_cohort" and params.get("phase", "offer") == "offer")
        ):
            items += int(params.get("max_items", 0))
    return Usage(jobs=len(rows), psi_items=items)


class Sandbox:
    """The sandbox service over the catalog DB, the lakehouse and the audit chain.

    Args:
        settings: the deployment's :class:`govdx.Settings`.
        factory: a catalog session factory (default: ``catalog.open_catalog`` after migrating).
        clock: returns the current UTC time (tests move it to expire jobs).

    Raises:
        catalog.CatalogError: the catalog DB cannot be migrated or opened.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        factory: sessionmaker[Session] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        if factory is None:
            catalog.migrate(settings.catalog_db_url)
            factory = catalog.open_catalog(settings.catalog_db_url)
        self.factory = factory
        self.clock = clock or utcnow
        self.audit = Auditor(factory, settings.keys_dir)

    def close(self) -> None:
        """Dispose of the DB engine."""
        self.factory.kw["bind"].dispose()

    @property
    def root(self) -> Path:
        """``<home>/sandbox``: one folder per job."""
        return self.settings.home / "sandbox"

    def job_dir(self, job_id: str) -> Path:
        """The folder of a job (inputs and result)."""
        return self.root / job_id

    # --- users ----------------------------------------------------------------------------
    def add_user(
        self, name: str, role: str, department: str | None = None, *, actor: str = "cli"
    ) -> dict[str, Any]:
        """Create a user.

        Raises:
            UserError: bad name, unknown role, a steward without department, or a duplicate.
        """
        if not name or len(name) > 64 or not set(name.lower()) <= _NAME_OK:
            raise UserError(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '-', '@'")
        if role not in ROLES:
            raise UserError(f"role {role!r} is not one of {list(ROLES)}")
        if role == "steward" and not department:
            raise UserError("a steward (数据管理员) needs --department, the department it manages")
        if department is not None:
            self._check_department_code(department)
        try:
            with self.factory.begin() as s:
                if s.get(User, name) is not None:
                    raise UserError(f"user {name!r} already exists")
                s.add(
                    User(name=name, role=role, department_code=department, created_at=self.clock())
                )
        except IntegrityError as exc:
            raise UserError(f"user {name!r} already exists") from exc
        self.audit.record(actor, "user.add", name, {"role": role, "department": department})
        return {"name": name, "role": role, "department": department}

    def add_user_by(
        self, acting: str | None, name: str, role: str, department: str | None = None
    ) -> dict[str, Any]:
        """Create a user on behalf of ``acting`` (the CLI's ``--user``): an admin, or nobody
        while no admin exists yet (the operator's bootstrap of a new home).

        Raises:
            PermissionDenied: ``acting`` is not an admin, or none is given once an admin
                exists. UserError: as :meth:`add_user`; ``acting`` unknown or disabled.
        """
        if acting:
            u = self.get_user(acting)
            if u.role != "admin":
                raise PermissionDenied(
                    f"{u.name!r} is a {u.role}; adding users needs an admin (仅管理员可添加用户)"
                )
        else:
            with self.factory() as s:
                admin = s.scalars(select(User.name).where(User.role == "admin").limit(1)).first()
            if admin is not None:
                raise PermissionDenied(
                    "an admin exists: pass --user ADMIN (or set GOVDX_USER) to add users "
                    "(需由管理员添加用户)"
                )
        return self.add_user(name, role, department, actor=acting or "cli")

    def _check_department_code(self, code: str) -> None:
        """Refuse a department code that differs only in case from a catalog department's (a
        steward of ``swj`` would see none of SWJ's entries); new codes are allowed (a
        department may get its steward before its first dataset).

        Raises:
            UserError: naming the catalog's spelling.
        """
        with self.factory() as s:
            known = list(s.scalars(select(catalog.Department.code)))
        same = [k for k in known if k != code and k.casefold() == code.casefold()]
        if same and code not in known:
            raise UserError(
                f"department {code!r}: the catalog spells it {same[0]!r} (部门代码大小写不符)"
            )

    def ensure_users(
        self, users: list[tuple[str, str, str | None]], *, actor: str = "demo"
    ) -> None:
        """Create each ``(name, role, department)`` user that does not exist yet (demo steps).

        Raises:
            UserError: as :meth:`add_user`.
        """
        for name, role, department in users:
            try:
                self.get_user(name)
            except UserError:
                self.add_user(name, role, department, actor=actor)

    def run_through(
        self, spec: JobSpec, *, requester: str, approvers: Sequence[str], what: str
    ) -> tuple[str, bytes]:
        """Submit, approve (each approver while the job still awaits approval), run and fetch
        a job as its requester — the demo steps' whole path through the sandbox.

        Returns:
            ``(job id, result bytes)``.

        Raises:
            SandboxError: a refusal at any step. RunError: the run failed (``what`` and the
                worker's reason in the message).
        """
        job = self.submit(spec, user=requester)
        for approver in approvers:
            if self.show(job["id"], user=None)["state"] != "awaiting_approval":
                break
            self.approve(job["id"], user=approver)
        ran = self.run(job["id"])
        if ran["state"] != "succeeded":
            raise RunError(f"{what} job {job['id']} failed: {ran.get('reason')}")
        return job["id"], self.result(job["id"], user=requester).data

    def list_users(self) -> list[dict[str, Any]]:
        """All users, by name."""
        with self.factory() as s:
            return [_user_dict(u) for u in s.scalars(select(User).order_by(User.name))]

    def get_user(self, name: str | None) -> User:
        """The acting user.

        Raises:
            UserError: no name given, or no such user.
        """
        if not name:
            raise UserError("no acting user: pass --user NAME or set GOVDX_USER (未指定操作用户)")
        with self.factory() as s:
            user = s.get(User, name)
        if user is None:
            raise UserError(f"unknown user {name!r} (用户不存在); see `govdx users list`")
        if user.disabled_at is not None:
            raise UserError(
                f"user {name!r} was disabled at {_iso(user.disabled_at)} (用户已停用); "
                "an admin can `govdx users enable` it"
            )
        return user

    def set_disabled(self, name: str, disabled: bool, *, actor: str) -> dict[str, Any]:
        """Disable (停用) or enable (启用) user ``name``; an admin acts. Audited (``user.disable``
        / ``user.enable``). A disabled user cannot log in to the API, its tokens are refused, and
        it cannot act in the CLI; its jobs, approvals and audit entries are kept.

        Raises:
            UserError: unknown or disabled ``actor``, unknown ``name``.
            PermissionDenied: ``actor`` is not an admin, or disables itself.
        """
        admin = self.get_user(actor)
        if admin.role != "admin":
            raise PermissionDenied(f"{admin.name!r} is a {admin.role}; this needs an admin")
        if disabled and name == admin.name:
            raise PermissionDenied("an admin cannot disable itself (不能停用自己)")
        with self.factory.begin() as s:
            user = s.get(User, name)
            if user is None:
                raise UserError(f"unknown user {name!r} (用户不存在); see `govdx users list`")
            user.disabled_at = self.clock() if disabled else None
            out = _user_dict(user)
        self.audit.record(admin.name, "user.disable" if disabled else "user.enable", name, {})
        return out

    # --- helpers --------------------------------------------------------------------------
    def _refuse(
        self, actor: str, subject: str, exc: Refused, action: str = "job.refuse"
    ) -> Refused:
        self.audit.record(actor, action, subject, {"reason": exc.reason})
        return exc

    def _contract(self, s: Session, code: str) -> tuple[Any, Contract]:
        ds = catalog.get_dataset(session=s, code=code)
        try:
            contract = Contract.from_dict(
                yaml.safe_load(ds.contract_yaml or ""), path=f"catalog:{code}"
            )
        except ContractError:
            raise
        return ds, contract

    def _usage(self, s: Session, requester: str, code: str) -> Usage:
        return usage_since(s, requester, code, self.clock() - timedelta(hours=24))

    def _transition(
        self,
        s: Session,
        job_id: str,
        expected: JobState | str,
        target: JobState,
        actor: str,
        reason: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        check_transition(job_id, expected, target)
        now = self.clock()
        if target in (JobState.approved, JobState.rejected):
            # reached at most once per job (no edge leads back before a decision)
            values = {"decided_at": now, **(values or {})}
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == str(expected))
            .values(state=target.value, updated_at=now, **(values or {}))
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            raise TransitionRefused(
                f"job {job_id}: state changed concurrently, it is no longer {JobState(expected).value}"
            )
        s.add(
            JobTransition(
                job_id=job_id,
                from_state=str(expected),
                to_state=target.value,
                actor=actor,
                reason=reason,
                at=now,
            )
        )

    def _job(self, s: Session, job_id: str) -> Job:
        job = s.get(Job, job_id, populate_existing=True)
        if job is None:
            raise JobNotFound(job_id)
        return job

    # --- submit ---------------------------------------------------------------------------
    def evaluate(self, spec: JobSpec, *, user: str) -> PolicyDecision:
        """The policy decision a submission would get now (dry run; nothing is written)."""
        u = self.get_user(user)
        with self.factory() as s:
            _, contract = self._contract(s, spec.dataset)
            return evaluate_policy(spec, contract, u, usage=self._usage(s, u.name, contract.code))

    def submit(self, spec: JobSpec, *, user: str) -> dict[str, Any]:
        """Submit a job: check the policy, pin the version, store inputs, await approval.

        Args:
            spec: a validated :class:`JobSpec` (input paths absolute, see ``load_job_spec``).
            user: the acting user (the requester).

        Returns:
            The job summary (see :meth:`show`), state ``awaiting_approval`` or ``approved``.

        Raises:
            UserError: unknown user.
            Refused: unknown dataset, unpinnable version, unreadable/oversized/malformed
                input, a spec naming another requester.
            PolicyRefused: the policy refuses (every reason listed). All refusals are audited.
        """
        u = self.get_user(user)
        subject = f"dataset:{spec.dataset}"
        if spec.requester and spec.requester != u.name:
            raise self._refuse(
                u.name,
                subject,
                Refused(f"the spec names requester {spec.requester!r} but {u.name!r} submits it"),
            )
        with self.factory() as s:
            try:
                ds, contract = self._contract(s, spec.dataset)
            except catalog.DatasetNotFound as exc:
                raise self._refuse(u.name, subject, Refused(str(exc))) from exc
            versions = {v.delta_version for v in catalog.list_versions(session=s, code=ds.code)}
            if spec.version == "current":
                cur = ds.current_version
                if cur is None:
                    raise self._refuse(
                        u.name,
                        subject,
                        Refused(f"dataset {ds.code} has no committed version to pin (无可用版本)"),
                    )
                version = cur.delta_version
            elif spec.version not in versions:
                raise self._refuse(
                    u.name,
                    subject,
                    Refused(
                        f"version: dataset {ds.code} has no registered version {spec.version} "
                        f"(cannot pin; registered: {sorted(versions)})"
                    ),
                )
            else:
                version = int(spec.version)
            usage = self._usage(s, u.name, ds.code)
            dataset_name = ds.name
        comp = get_computation(spec.computation.name)
        assert comp is not None  # parse_job_spec checked it
        inputs: dict[str, bytes] = {}
        for name, path in spec.inputs.items():
            p = Path(path)
            try:
                size = p.stat().st_size
                if size > MAX_INPUT_BYTES:
                    raise self._refuse(
                        u.name,
                        subject,
                        Refused(
                            f"inputs.{name}: {size} bytes is over the limit of {MAX_INPUT_BYTES}"
                        ),
                    )
                inputs[name] = p.read_bytes()
            except OSError as exc:
                raise self._refuse(
                    u.name,
                    subject,
                    Refused(f"inputs.{name}: cannot read {p.name!r}: {exc.strerror}"),
                ) from exc
        params = spec.params
        reasons = comp.check_inputs(params, inputs)
        # a request for another identifier type than the column's (psi): refused before approval
        reasons += getattr(comp, "check_request_element", lambda *_a: [])(params, inputs, contract)
        if reasons:
            raise self._refuse(u.name, subject, InputRefused(reasons))
        decision = evaluate_policy(spec, contract, u, usage=usage)
        reasons = list(decision.reasons) if not decision.allowed else []
        items = getattr(comp, "input_items", lambda _inputs: None)(inputs)
        policy = sandbox_policy(contract)
        min_items = policy.psi_min_items
        if items is not None and items < min_items:
            reasons.append(
                f"inputs.request: the request holds {items} distinct item(s), fewer than "
                f"sandbox.psi_min_items = {min_items} (集合过小，可能用于单个主体查询)"
            )
        # a computation's own floor on the request (e.g. psi_sum's and he_cohort's k)
        reasons += getattr(comp, "check_input_items", lambda *_a: [])(items, params, policy)
        # a second-phase request answers the first job it names (psi_sum reveal, he_cohort sum)
        reasons += getattr(comp, "check_linked_inputs", lambda *_a: [])(self, params, inputs)
        if not ds.published:
            reasons.append(
                f"dataset {contract.code} is not published in the catalog (未发布的目录不受理作业)"
            )
        if reasons:
            raise self._refuse(u.name, subject, PolicyRefused(reasons))

        job_id = new_job_id()
        jdir = self.job_dir(job_id)
        (jdir / "inputs").mkdir(parents=True, mode=0o700)
        digests = {}
        for name, data in inputs.items():
            (jdir / "inputs" / name).write_bytes(data)
            digests[name] = sm3_hex(data)
        pinned = spec.model_copy(
            update={
                "version": version,
                "requester": u.name,
                "inputs": {k: f"inputs/{k}" for k in inputs},
            }
        )
        now = self.clock()
        try:
            with self.factory.begin() as s:
                # e.g. the DP ledger reserves the job's ε/δ first, in this transaction
                _hook(
                    comp.name,
                    "on_submit",
                    s,
                    job_id=job_id,
                    requester=u.name,
                    contract=contract,
                    params=params,
                    now=now,
                )
                s.add(
                    Job(
                        id=job_id,
                        requester=u.name,
                        dataset_code=contract.code,
                        delta_version=version,
                        computation=comp.name,
                        spec_json=pinned.model_dump_json(),
                        state="submitted",
                        decision_json=json.dumps(decision.to_dict(), ensure_ascii=False),
                        inputs_json=json.dumps(digests),
                        attempts=0,
                        summary_json=json.dumps(
                            {"request_items": items} if items is not None else {}
                        ),
                        created_at=now,
                        updated_at=now,
                    )
                )
                s.add(
                    JobTransition(
                        job_id=job_id, from_state=None, to_state="submitted", actor=u.name, at=now
                    )
                )
                s.flush()
                self._transition(s, job_id, JobState.submitted, JobState.policy_checked, "policy")
                if decision.auto_approve:
                    self._transition(
                        s,
                        job_id,
                        JobState.policy_checked,
                        JobState.approved,
                        "policy",
                        "auto-approved: unconditional share, general non-personal data (自动批准)",
                    )
                else:
                    self._transition(
                        s, job_id, JobState.policy_checked, JobState.awaiting_approval, "policy"
                    )
        except Refused as exc:  # audited once the transaction (and its DB lock) is over
            raise self._refuse(u.name, subject, exc) from None
        self.audit.record(
            u.name,
            "job.submit",
            job_id,
            {
                "dataset": contract.code,
                "table": dataset_name,
                "version": version,
                "computation": comp.name,
                "purpose": spec.purpose,
                "legal_basis": spec.legal_basis,
                "inputs": digests,
                "decision": decision.to_dict(),
            },
        )
        return self.show(job_id, user=u.name)

    # --- approvals ------------------------------------------------------------------------
    def approve(self, job_id: str, *, user: str, reason: str | None = None) -> dict[str, Any]:
        """Record an approval (审批通过); the job becomes ``approved`` once every slot is filled.

        Slots: a steward of the owning department; plus a reviewer when the dataset is
        core/important or holds sensitive fields (双人复核). The submitter never approves its
        own job; nobody approves twice.

        Raises:
            JobNotFound, PermissionDenied, TransitionRefused: each audited.
        """
        u = self.get_user(user)
        try:
            with self.factory.begin() as s:
                job = self._job(s, job_id)
                if job.state != JobState.awaiting_approval:
                    raise TransitionRefused(
                        f"job {job_id} is {job.state} ({STATE_ZH[job.state]}), not awaiting approval"
                    )
                if u.name == job.requester:
                    raise PermissionDenied(
                        f"{u.name!r} submitted job {job_id} and may not approve it (不得审批本人提交的作业)"
                    )
                done = list(s.scalars(select(Approval).where(Approval.job_id == job_id)))
                if any(a.approver == u.name for a in done):
                    raise PermissionDenied(
                        f"{u.name!r} already decided on job {job_id}; a second approval must come "
                        "from a different person (双人复核须由不同人员完成)"
                    )
                decision = json.loads(job.decision_json)
                slots = _slots(decision)
                filled = {a.role for a in done if a.decision == "approve"}
                role = self._approver_role(u, decision)
                if role not in slots:
                    raise PermissionDenied(_who_may(decision, slots - filled, job_id, u))
                if role in filled:
                    raise PermissionDenied(
                        f"job {job_id} already has its {role} approval; the remaining approval must "
                        f"come from: {sorted(slots - filled)}"
                    )
                s.add(
                    Approval(
                        job_id=job_id,
                        approver=u.name,
                        role=role,
                        decision="approve",
                        reason=reason,
                        at=self.clock(),
                    )
                )
                s.flush()
                complete = (filled | {role}) >= slots
                if complete:
                    self._transition(
                        s, job_id, JobState.awaiting_approval, JobState.approved, u.name, reason
                    )
        except (PermissionDenied, TransitionRefused) as exc:
            raise self._refuse(u.name, job_id, exc, "job.approve.refuse") from None
        except IntegrityError as exc:
            raise self._refuse(
                u.name,
                job_id,
                PermissionDenied(f"{u.name!r} already decided on job {job_id}"),
                "job.approve.refuse",
            ) from exc
        self.audit.record(
            u.name, "job.approve", job_id, {"role": role, "reason": reason, "complete": complete}
        )
        if complete:
            self.audit.record(
                u.name, "job.transition", job_id, {"from": "awaiting_approval", "to": "approved"}
            )
        return self.show(job_id, user=u.name)

    def _approver_role(self, u: User, decision: dict[str, Any]) -> str | None:
        if u.role == "steward" and u.department_code == decision["owner_department"]:
            return "steward"
        if u.role == "reviewer":
            return "reviewer"
        return None

    def reject(self, job_id: str, *, user: str, reason: str) -> dict[str, Any]:
        """Reject a job awaiting approval (驳回); a steward of the owner or a reviewer.

        Raises:
            JobNotFound, PermissionDenied, TransitionRefused, Refused (no reason): audited.
        """
        u = self.get_user(user)
        try:
            if not reason or not reason.strip():
                raise Refused("a rejection needs --reason (驳回须说明理由)")
            with self.factory.begin() as s:
                job = self._job(s, job_id)
                decision = json.loads(job.decision_json)
                if u.name == job.requester:
                    raise PermissionDenied(
                        f"{u.name!r} submitted job {job_id}; use cancel, not reject"
                    )
                if self._approver_role(u, decision) is None:
                    raise PermissionDenied(
                        f"{u.name!r} may not reject job {job_id}: only a steward of "
                        f"{decision['owner_department']} or a reviewer (审核员) may"
                    )
                s.add(
                    Approval(
                        job_id=job_id,
                        approver=u.name,
                        role=self._approver_role(u, decision) or u.role,
                        decision="reject",
                        reason=reason,
                        at=self.clock(),
                    )
                )
                self._transition(
                    s, job_id, job.state, JobState.rejected, u.name, reason, {"reason": reason}
                )
                _hook(job.computation, "on_abandon", s, job_id=job_id, now=self.clock())
        except Refused as exc:
            raise self._refuse(u.name, job_id, exc, "job.reject.refuse") from None
        except IntegrityError as exc:
            raise self._refuse(
                u.name,
                job_id,
                PermissionDenied(f"{u.name!r} already decided on job {job_id}"),
                "job.reject.refuse",
            ) from exc
        self.audit.record(u.name, "job.reject", job_id, {"reason": reason})
        return self.show(job_id, user=u.name)

    def cancel(self, job_id: str, *, user: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel a job (撤销): its requester or an admin, before it runs or after it failed.

        Raises:
            JobNotFound, PermissionDenied, TransitionRefused: audited.
        """
        u = self.get_user(user)
        try:
            with self.factory.begin() as s:
                job = self._job(s, job_id)
                if u.name != job.requester and u.role != "admin":
                    raise PermissionDenied(
                        f"only the requester or an admin may cancel job {job_id}"
                    )
                prev = job.state
                self._transition(s, job_id, prev, JobState.cancelled, u.name, reason)
                _hook(job.computation, "on_abandon", s, job_id=job_id, now=self.clock())
        except Refused as exc:
            raise self._refuse(u.name, job_id, exc, "job.cancel.refuse") from None
        self.audit.record(
            u.name, "job.transition", job_id, {"from": prev, "to": "cancelled", "reason": reason}
        )
        return self.show(job_id, user=u.name)

    def expire_stale(self) -> list[str]:
        """Expire jobs waiting for approval, or approved but never run, longer than the
        dataset's ``approval_ttl_hours``. Returns the expired job ids."""
        now = self.clock()
        expired: list[str] = []
        with self.factory() as s:
            rows = s.execute(
                select(Job.id, Job.state, Job.updated_at, Job.dataset_code, Job.computation).where(
                    Job.state.in_([JobState.awaiting_approval.value, JobState.approved.value])
                )
            ).all()
            ttl_by_code: dict[str, float] = {}
            for _, _, _, code, _ in rows:
                if code not in ttl_by_code:
                    try:
                        ttl_by_code[code] = sandbox_policy(
                            self._contract(s, code)[1]
                        ).approval_ttl_hours
                    except (catalog.CatalogError, ContractError):
                        ttl_by_code[code] = 72.0
        for job_id, state, updated, code, computation in rows:
            if now - updated < timedelta(hours=ttl_by_code[code]):
                continue
            try:
                with self.factory.begin() as s:
                    self._transition(
                        s,
                        job_id,
                        state,
                        JobState.expired,
                        "system",
                        f"no progress for {ttl_by_code[code]:g} h (已过期)",
                    )
                    _hook(computation, "on_abandon", s, job_id=job_id, now=now)
            except TransitionRefused:
                continue
            self.audit.record("system", "job.transition", job_id, {"from": state, "to": "expired"})
            expired.append(job_id)
        return expired

    def recover_lost(self) -> list[str]:
        """Fail running jobs whose lease ran out (their worker or service died)."""
        now = self.clock()
        lost: list[str] = []
        with self.factory() as s:
            ids = list(
                s.scalars(
                    select(Job.id).where(Job.state == JobState.running.value, Job.deadline_at < now)
                )
            )
        for job_id in ids:
            reason = "worker lost: no result before the run deadline (工作进程丢失)"
            try:
                with self.factory.begin() as s:
                    self._transition(
                        s,
                        job_id,
                        JobState.running,
                        JobState.failed,
                        "system",
                        reason,
                        {"reason": reason, "deadline_at": None},
                    )
            except TransitionRefused:
                continue
            self.audit.record("system", "job.fail", job_id, {"reason": reason})
            lost.append(job_id)
        return lost

    # --- running --------------------------------------------------------------------------
    def run(self, job_id: str, *, actor: str = "worker") -> dict[str, Any]:
        """Run an approved (or failed, for a re-run) job in a worker and record the outcome.

        Returns:
            The job summary: ``succeeded`` with the result digest, or ``failed`` with a reason.

        Raises:
            JobNotFound, TransitionRefused: the job cannot be started (audited).
        """
        try:
            with self.factory.begin() as s:
                job = self._job(s, job_id)
                ds, contract = self._contract(s, job.dataset_code)
                policy = sandbox_policy(contract)
                prev = job.state
                deadline = self.clock() + timedelta(
                    seconds=policy.time_limit_seconds + LEASE_GRACE_SECONDS
                )
                self._transition(
                    s,
                    job_id,
                    prev,
                    JobState.running,
                    actor,
                    None,
                    {"attempts": job.attempts + 1, "deadline_at": deadline, "reason": None},
                )
                spec = JobSpec.model_validate_json(job.spec_json)
                _hook(
                    spec.computation.name,
                    "on_run_start",
                    s,
                    job_id=job_id,
                    requester=job.requester,
                    contract=contract,
                    params=spec.params,
                    now=self.clock(),
                )
                requester = job.requester
                decision = json.loads(job.decision_json)
                dataset_name = ds.name
                version = job.delta_version
        except Refused as exc:
            raise self._refuse(actor, job_id, exc, "job.run.refuse") from None
        self.audit.record(actor, "job.transition", job_id, {"from": prev, "to": "running"})
        comp = get_computation(spec.computation.name)
        assert comp is not None
        params = spec.params
        jdir = self.job_dir(job_id)
        task = WorkerTask(
            settings=self.settings.model_dump(mode="json"),
            job_id=job_id,
            actor=requester,
            dataset_code=contract.code,
            dataset_name=dataset_name,
            delta_version=version,
            columns=comp.columns(params, contract),
            contract=contract.model_dump(mode="json"),
            policy=policy.model_dump(mode="json"),
            params=params.model_dump(mode="json"),
            computation=comp.import_path(),
            inputs={k: str(jdir / v) for k, v in spec.inputs.items()},
            out_dir=str(jdir / "result"),
            owner=bool(decision.get("owner")),
        )
        outcome = run_in_worker(
            task,
            time_limit_seconds=policy.time_limit_seconds,
            memory_limit_mb=policy.memory_limit_mb,
        )
        event = None
        with self.factory.begin() as s:
            if outcome.ok:
                self._transition(
                    s,
                    job_id,
                    JobState.running,
                    JobState.succeeded,
                    actor,
                    None,
                    {
                        "result_digest": outcome.digest,
                        "result_bytes": outcome.size,
                        "media_type": outcome.media_type,
                        "deadline_at": None,
                        "summary_json": json.dumps(outcome.summary, ensure_ascii=False),
                    },
                )
                # the run read the table: a COMPLETE lineage event (downstream of the entry)
                event = job_lineage_event(job_id, comp.name, dataset_name, version, task.columns)
                catalog.record_lineage(session=s, event=event)
            else:
                self._transition(
                    s,
                    job_id,
                    JobState.running,
                    JobState.failed,
                    actor,
                    outcome.reason,
                    {"reason": outcome.reason, "deadline_at": None},
                )
        if event is not None:
            catalog.LineageEmitter(self.settings.openlineage_url).emit(event)
        if outcome.ok:
            self.audit.record(
                actor,
                "job.succeed",
                job_id,
                {"digest": outcome.digest, "bytes": outcome.size, "summary": outcome.summary},
            )
        else:
            self.audit.record(
                actor, "job.fail", job_id, {"reason": outcome.reason, "exitcode": outcome.exitcode}
            )
        return self.show(job_id, user=None)

    def work_once(self, *, actor: str = "worker") -> list[dict[str, Any]]:
        """One pass of the worker loop: fail lost runs, expire stale jobs, run approved jobs
        (oldest first). Returns the summaries of the jobs it ran."""
        self.recover_lost()
        self.expire_stale()
        with self.factory() as s:
            ids = list(
                s.scalars(
                    select(Job.id)
                    .where(Job.state == JobState.approved.value)
                    .order_by(Job.created_at)
                )
            )
        ran = []
        for job_id in ids:
            try:
                ran.append(self.run(job_id, actor=actor))
            except TransitionRefused:  # another worker took it
                continue
        return ran

    # --- results --------------------------------------------------------------------------
    def result(self, job_id: str, *, user: str) -> ResultBundle:
        """Release a job's result to its requester (结果发布) and record the release.

        The first fetch moves ``succeeded → released``; later fetches by the requester return
        the same bytes and are recorded as releases too.

        Raises:
            JobNotFound, PermissionDenied (someone else), TransitionRefused (no result yet):
                audited. SandboxError: the stored result no longer matches its digest.
        """
        u = self.get_user(user)
        try:
            with self.factory.begin() as s:
                job = self._job(s, job_id)
                if u.name != job.requester:
                    raise PermissionDenied(
                        f"the result of job {job_id} is released only to its requester"
                    )
                if job.state not in (JobState.succeeded, JobState.released):
                    raise TransitionRefused(
                        f"job {job_id} is {job.state} ({STATE_ZH[job.state]}); no result to release"
                    )
                data = (self.job_dir(job_id) / "result" / RESULT_FILE).read_bytes()
                digest = sm3_hex(data)
                if digest != job.result_digest:
                    raise SandboxError(f"job {job_id}: stored result does not match its SM3 digest")
                first = job.state == JobState.succeeded
                if first:
                    self._transition(s, job_id, JobState.succeeded, JobState.released, u.name)
                    _hook(job.computation, "on_release", s, job_id=job_id, now=self.clock())
                s.add(
                    Release(
                        job_id=job_id,
                        recipient=u.name,
                        digest=digest,
                        bytes=len(data),
                        released_at=self.clock(),
                    )
                )
                media = job.media_type or "application/octet-stream"
        except Refused as exc:
            raise self._refuse(u.name, job_id, exc, "job.result.refuse") from None
        self.audit.record(
            u.name, "job.release", job_id, {"digest": digest, "bytes": len(data), "first": first}
        )
        return ResultBundle(job_id, data, digest, media)

    # --- reading --------------------------------------------------------------------------
    def _may_see(self, u: User | None, job: Job) -> bool:
        if u is None or u.role in ("admin", "reviewer") or u.name == job.requester:
            return True
        if u.role == "steward":
            return u.department_code == json.loads(job.decision_json).get("owner_department")
        return False

    def show(self, job_id: str, *, user: str | None) -> dict[str, Any]:
        """A job's record: spec, state, decision, approvals, transitions, releases.

        Args:
            job_id: the job. user: the viewer (requester, a steward of the owner, a reviewer
                or an admin); None = the platform itself.

        Raises:
            JobNotFound, PermissionDenied (audited).
        """
        u = self.get_user(user) if user is not None else None
        with self.factory() as s:
            job = self._job(s, job_id)
            if not self._may_see(u, job):
                raise self._refuse(
                    u.name if u else "-",
                    job_id,
                    PermissionDenied(f"{u.name if u else '-'!r} may not see job {job_id}"),
                    "job.show.refuse",
                )
            return _job_dict(s, job)

    def list_jobs(self, *, user: str, state: str | None = None) -> list[dict[str, Any]]:
        """The jobs the user may see, newest first, optionally of one state."""
        u = self.get_user(user)
        with self.factory() as s:
            stmt = select(Job).order_by(Job.created_at.desc())
            if state:
                stmt = stmt.where(Job.state == JobState(state).value)
            return [_job_brief(j) for j in s.scalars(stmt) if self._may_see(u, j)]


def _slots(decision: dict[str, Any]) -> set[str]:
    n = int(decision.get("approvals_required", 0))
    if n <= 0:
        return set()
    return {"steward", "reviewer"} if decision.get("reviewer_required") else {"steward"}


def _who_may(decision: dict[str, Any], missing: set[str], job_id: str, u: User) -> str:
    wanted = []
    if "steward" in missing:
        wanted.append(f"a steward (数据管理员) of {decision['owner_department']}")
    if "reviewer" in missing:
        wanted.append("a reviewer (审核员)")
    return (
        f"{u.name!r} (role {u.role}, department {u.department_code}) may not approve job "
        f"{job_id}; it needs {' and '.join(wanted) or 'no further approval'}"
    )


def _user_dict(u: User) -> dict[str, Any]:
    return {
        "name": u.name,
        "role": u.role,
        "department": u.department_code,
        "created_at": _iso(u.created_at),
        "disabled_at": _iso(u.disabled_at),
    }


def _job_brief(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "state_zh": STATE_ZH.get(job.state),
        "requester": job.requester,
        "dataset": job.dataset_code,
        "version": job.delta_version,
        "computation": job.computation,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "reason": job.reason,
    }


def _job_dict(s: Session, job: Job) -> dict[str, Any]:
    d = _job_brief(job)
    spec = json.loads(job.spec_json)
    d.update(
        {
            "purpose": spec["purpose"],
            "legal_basis": spec["legal_basis"],
            "params": spec["computation"]["params"],
            "decision": json.loads(job.decision_json),
            "inputs": json.loads(job.inputs_json),
            # what approvers must see: e.g. the item count actually in a PSI request
            "request_items": json.loads(job.summary_json).get("request_items")
            if job.result_digest is None
            else json.loads(job.summary_json).get("client_items"),
            "attempts": job.attempts,
            "result": None
            if job.result_digest is None
            else {
                "digest": job.result_digest,
                "bytes": job.result_bytes,
                "media_type": job.media_type,
                "summary": json.loads(job.summary_json),
            },
            "approvals": [
                {
                    "approver": a.approver,
                    "role": a.role,
                    "decision": a.decision,
                    "reason": a.reason,
                    "at": _iso(a.at),
                }
                for a in s.scalars(
                    select(Approval).where(Approval.job_id == job.id).order_by(Approval.id)
                )
            ],
            "transitions": [
                {
                    "from": t.from_state,
                    "to": t.to_state,
                    "actor": t.actor,
                    "reason": t.reason,
                    "at": _iso(t.at),
                }
                for t in s.scalars(
                    select(JobTransition)
                    .where(JobTransition.job_id == job.id)
                    .order_by(JobTransition.id)
                )
            ],
            "releases": [
                {
                    "recipient": r.recipient,
                    "digest": r.digest,
                    "bytes": r.bytes,
                    "at": _iso(r.released_at),
                }
                for r in s.scalars(
                    select(Release).where(Release.job_id == job.id).order_by(Release.id)
                )
            ],
        }
    )
    return d


def _hook(computation: str, name: str, session: Session, **kwargs: Any) -> None:
    """Call a computation's lifecycle hook (``on_submit``, ``on_run_start``, ``on_release``,
    ``on_abandon``) inside the caller's transaction, if the computation defines it."""
    comp = get_computation(computation)
    hook = getattr(comp, name, None) if comp is not None else None
    if hook is not None:
        hook(session, **kwargs)


#: UUID namespace of sandbox job runs in lineage (OpenLineage run ids are UUIDs; job ids are not)
_JOB_RUN_NAMESPACE = uuid.UUID("6f1c1b7e-3d2a-5b8e-9c41-0a7d2f6e4b10")


def job_lineage_event(
    job_id: str, computation: str, table: str, version: int, columns: Sequence[str]
) -> Any:
    """The OpenLineage COMPLETE event of a succeeded sandbox job (沙箱作业血缘).

    Job ``govdx/sandbox.<computation>``; run id ``uuid5(namespace, job_id)`` (stable per job);
    input: the lakehouse table at the pinned Delta ``version`` with the columns the worker read;
    no output dataset (the result goes to the requester, not into the lakehouse), so
    ``govdx lineage show`` lists the job as downstream of the entry.

    Returns:
        ``openlineage.client.event_v2.RunEvent``.
    """
    return catalog.build_run_event(
        event_type="COMPLETE",
        run_id=str(uuid.uuid5(_JOB_RUN_NAMESPACE, job_id)),
        job_name=f"sandbox.{computation}",
        inputs=[
            catalog.table_dataset(table, [(c, "", None) for c in columns], version=str(version))
        ],
        outputs=[],
    )
