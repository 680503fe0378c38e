"""``/api/v1/sandbox``: submit jobs, list and show them, approve / reject / cancel, download
released results, and read one's quotas.

PSI over the API is the requester-side protocol of ``govdx client psi``: the requester builds
the blinded request locally (``privacy.PsiClientSession.create``; identifiers never leave its
machine in plaintext), uploads it as the job's ``request`` input, and after approval and the
run downloads the response bytes from ``.../result`` to finish locally. Homomorphic (Paillier)
jobs are not a sandbox computation yet; they will use the same upload/download pair.

Who may do what is decided by the role rule of each route and, per job, by the
:class:`sandbox.Sandbox` service (requester, steward of the owning department, reviewer,
admin); its refusals are audited and come back as 403/409/422.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Response, UploadFile, status

from api import crud
from api.deps import AnyUser, Principal, SessionDep, StateDep, require_role
from api.schemas import BudgetQuery, JobApprove, JobCancel, JobReject, JobsQuery

router = APIRouter(prefix="/api/v1/sandbox", tags=["sandbox"])

JobId = Annotated[str, Path(min_length=8, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Submitter = Annotated[Principal, require_role("requester", "analyst", "steward")]
Approver = Annotated[Principal, require_role("steward", "reviewer")]
Canceller = Annotated[Principal, require_role("requester", "analyst", "steward", "admin")]

MAX_SPEC_CHARS = 64 * 1024


def _check_rate(state: StateDep, user: Principal) -> None:
    if not state.limiter.hit(state.submit_item, "submit", user.name):
        state.sandbox.audit.record(user.name, "job.submit.throttled", "sandbox", {})
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"job submissions over the limit of {state.settings.submit_rate} (提交过于频繁)",
            headers={"Retry-After": "60"},
        )


def _save_upload(f: UploadFile, dest: FsPath, limit: int, name: str) -> None:
    written = 0
    with dest.open("wb") as out:
        while chunk := f.file.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"inputs.{name}: over the upload limit of {limit} bytes",
                )
            out.write(chunk)


@router.post("/jobs", status_code=status.HTTP_201_CREATED, summary="Submit a job (提交作业)")
def submit_job(
    user: Submitter,
    state: StateDep,
    spec: Annotated[
        str, Form(min_length=2, max_length=MAX_SPEC_CHARS, description="job spec, JSON")
    ],
    inputs: Annotated[
        list[UploadFile] | None,
        File(description="input files; spec.inputs maps each input name to a file name here"),
    ] = None,
) -> dict[str, Any]:
    """Submit a job spec (JSON, as ``sandbox.load_job_spec`` reads) with its input files.

    ``spec.inputs`` maps input names to the *file names* of the uploaded parts, e.g.
    ``{"request": "psi-request.bin"}``. Limited per user (``GOVDX_SUBMIT_RATE``) and per file
    (``GOVDX_MAX_UPLOAD_BYTES``)."""
    from sandbox import parse_job_spec

    _check_rate(state, user)
    try:
        data = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "spec"],
                    "msg": f"not valid JSON: {exc.msg}",
                    "type": "json_invalid",
                }
            ],
        ) from exc
    job_spec = parse_job_spec(data, path="spec")
    files = {f.filename: f for f in inputs or [] if f.filename}
    tmp = FsPath(tempfile.mkdtemp(prefix="upload-", dir=state.settings.staging_dir))
    try:
        paths = {}
        for name, filename in job_spec.inputs.items():
            upload = files.get(filename)
            if upload is None:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    [
                        {
                            "loc": ["body", "spec", "inputs", name],
                            "msg": f"no uploaded file named {filename!r} in 'inputs'",
                            "type": "missing",
                        }
                    ],
                )
            dest = tmp / f"{len(paths)}.bin"
            _save_upload(upload, dest, state.settings.max_upload_bytes, name)
            paths[name] = str(dest)
        return state.sandbox.submit(job_spec.model_copy(update={"inputs": paths}), user=user.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@router.get("/jobs", summary="List jobs (作业列表)")
def list_jobs(
    user: AnyUser, state: StateDep, query: Annotated[JobsQuery, Query()]
) -> list[dict[str, Any]]:
    """Jobs the caller may see, newest first: its own; a steward's department's; all for
    reviewers and admins."""
    return state.sandbox.list_jobs(user=user.name, state=query.state)


@router.get("/jobs/{job_id}", summary="Show a job (作业详情)")
def show_job(job_id: JobId, user: AnyUser, state: StateDep) -> dict[str, Any]:
    """Spec, policy decision, approvals, transitions and releases of a job the caller may see."""
    return state.sandbox.show(job_id, user=user.name)


@router.post("/jobs/{job_id}/approve", summary="Approve a job (审批通过)")
def approve_job(
    job_id: JobId, user: Approver, state: StateDep, body: JobApprove | None = None
) -> dict[str, Any]:
    """Approve: a steward of the owning department; a reviewer for 双人复核."""
    return state.sandbox.approve(job_id, user=user.name, reason=body.reason if body else None)


@router.post("/jobs/{job_id}/reject", summary="Reject a job (驳回)")
def reject_job(job_id: JobId, body: JobReject, user: Approver, state: StateDep) -> dict[str, Any]:
    """Reject a job awaiting approval; the reason is required."""
    return state.sandbox.reject(job_id, user=user.name, reason=body.reason)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (撤销)")
def cancel_job(
    job_id: JobId, user: Canceller, state: StateDep, body: JobCancel | None = None
) -> dict[str, Any]:
    """Cancel: the job's requester or an admin."""
    return state.sandbox.cancel(job_id, user=user.name, reason=body.reason if body else None)


@router.get(
    "/jobs/{job_id}/result",
    summary="Download a released result (下载结果)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}, "application/json": {}}}},
)
def job_result(job_id: JobId, user: Submitter, state: StateDep) -> Response:
    """The result bytes, released to the job's requester only (each download is recorded);
    header ``X-Govdx-SM3`` carries the SM3 digest of the body."""
    bundle = state.sandbox.result(job_id, user=user.name)
    return Response(
        content=bundle.data,
        media_type=bundle.media_type,
        headers={
            "X-Govdx-SM3": bundle.digest,
            "Content-Disposition": f'attachment; filename="{job_id}.result"',
        },
    )


@router.get("/budget", summary="My quotas (额度)")
def budget(
    user: Submitter,
    state: StateDep,
    session: SessionDep,
    query: Annotated[BudgetQuery, Query()],
) -> list[dict[str, Any]]:
    """The caller's use of each dataset's sandbox quotas in the last 24 h (jobs, PSI items)."""
    entries = [e for e in state.index.entries() if crud.visible(e, user)]
    codes = [e.code for e in entries]
    if query.dataset:
        unknown = sorted(set(query.dataset) - set(codes))
        if unknown:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"catalog entry {unknown[0]!r} not found"
            )
        codes = [c for c in codes if c in set(query.dataset)]
    return crud.quota_usage(session=session, user=user.name, codes=codes)
