"""Sandbox steps of the demo: what the bank and the departments do after ingestion.

Each step plays every role through the real services (the sandbox's policy, approvals, isolated
worker and disclosure control; the requester-side client on the bank's data) and returns a
JSON-ready summary. Users are created once per home.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv

from govdx import Settings

DEMO_USERS: list[tuple[str, str, str | None]] = [
    ("bank_credit", "requester", "BANK"),  # 银行信贷部 (requester)
    ("swj_steward", "steward", "SWJ"),  # 税务局数据管理员
    ("rsj_steward", "steward", "RSJ"),  # 人社局数据管理员
    ("scjg_steward", "steward", "SCJG"),  # 市场监管局数据管理员
    ("reviewer_1", "reviewer", None),  # 审核员 (双人复核)
    ("bdb_analyst", "analyst", "DSJJ"),  # 大数据局分析员
]


def ensure_demo_users(box: Any) -> None:
    """Create the demo's users in the sandbox unless they exist."""
    box.ensure_users(DEMO_USERS)


def psi_step(settings: Settings, bank_applicants: Path, *, workdir: Path) -> dict[str, Any]:
    """银税互动: the bank learns how many of its applicants are registered taxpayers.

    The bank normalises and blinds its applicants' USCCs on its side (``PsiClientSession``);
    only the blinded request reaches the platform. The tax department's steward and a reviewer
    approve (the tax dataset is graded important: 双人复核); the worker answers inside the
    sandbox; the bank finishes the protocol locally and learns the intersection cardinality.

    Returns:
        ``{"job_id", "state", "applicants", "rejected", "cardinality", "approvals"}``.
    """
    from privacy import PsiClientSession
    from sandbox import Sandbox, parse_job_spec

    box = Sandbox(settings)
    try:
        ensure_demo_users(box)
        table = pacsv.read_csv(
            bank_applicants,
            convert_options=pacsv.ConvertOptions(column_types={"统一社会信用代码": "string"}),
        )
        items = table["统一社会信用代码"].to_pylist()
        session, request = PsiClientSession.create(items, reveal_intersection=False, element="uscc")
        workdir.mkdir(parents=True, exist_ok=True)
        req_path = workdir / "psi_request.bin"
        req_path.write_bytes(request.to_bytes())
        spec = parse_job_spec(
            {
                "purpose": "银税互动：核验贷款申请企业是否为本市纳税人（仅交集数量）",
                "legal_basis": "企业授权书（信易贷申请）",
                "dataset": "SWJ-0001",
                "version": "current",
                "computation": {
                    "name": "psi",
                    "params": {"column": "taxpayer_id", "max_items": max(len(items), 1)},
                },
                "inputs": {"request": str(req_path)},
            }
        )
        job = box.submit(spec, user="bank_credit")
        box.approve(job["id"], user="swj_steward", reason="企业授权齐全")
        job = box.approve(job["id"], user="reviewer_1", reason="复核通过")
        ran = box.run(job["id"])
        bundle = box.result(job["id"], user="bank_credit")
        outcome = session.finish(bundle.data)
        return {
            "job_id": job["id"],
            "state": ran["state"],
            "applicants": len(session.items),
            "rejected": len(session.rejected),
            "cardinality": outcome.cardinality,
            "approvals": ["swj_steward", "reviewer_1"],
        }
    finally:
        box.close()
