"""Test data of the API tests: users of every role, passwords, a seeded home."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

#: name → (role, department). The matrix acts as ROLE_USER[role].
USERS: dict[str, tuple[str, str | None]] = {
    "swj_steward": ("steward", "SWJ"),
    "scjg_steward": ("steward", "SCJG"),
    "reviewer1": ("reviewer", None),
    "bank": ("requester", None),
    "analyst1": ("analyst", "TJJ"),
    "admin1": ("admin", None),
    "burst": ("requester", None),
    "victim": ("requester", None),
}
ROLE_USER = {
    "steward": "swj_steward",
    "reviewer": "reviewer1",
    "requester": "bank",
    "analyst": "analyst1",
    "admin": "admin1",
}
ROLES = tuple(ROLE_USER)
OWNED = "SWJ-0001"  # the dataset of swj_steward (tax_payment)
OPEN_CODE = "TJJ-PUB-0001"  # the open (无条件开放) dataset
UNPUBLISHED = "RSJ-0001"  # registered, never published
SANDBOX_POLICY = {
    "allowed_computations": ["psi"],
    "psi_columns": ["taxpayer_id"],
    "psi_max_items": 100000,
    "psi_items_per_day": 10_000_000,
    "psi_reveal_allowed": False,
    "min_group_size_k": 10,
    "quota_jobs_per_day": 1000,
    "time_limit_seconds": 120,
}


def password(name: str) -> str:
    return f"pw-{name}-S3cret!"


def seed_home(settings, workdir: Path) -> dict:
    """Ingest the credit demo (300 rows) and one open public dataset, publish some entries,
    add users with passwords. Returns facts the tests check against."""
    import catalog
    from api.crud import set_password
    from govdx import Contract
    from govdx.demo import write_credit_demo
    from pipelines import ingest
    from sandbox import Sandbox

    _, contracts = write_credit_demo(workdir, rows=300)
    public = (
        Path(__file__).resolve().parents[2]
        / "govdx/demo/contracts/public/tjj_province_population_sample.yaml"
    )
    for path in [*contracts, public]:
        ingest(path, settings=settings)
    with catalog.session_scope(settings.catalog_db_url) as s:
        tax = catalog.get_dataset(session=s, code=OWNED)
        data = yaml.safe_load(tax.contract_yaml)
        data["sandbox"] = SANDBOX_POLICY
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        catalog.upsert_dataset(
            session=s, contract=Contract.from_dict(data, path="test"), contract_yaml=text
        )
        for code in (OWNED, "SCJG-0001", OPEN_CODE):
            catalog.set_published(session=s, code=code, published=True)
    box = Sandbox(settings)
    try:
        for name, (role, dept) in USERS.items():
            box.add_user(name, role, dept, actor="test")
    finally:
        box.close()
    with catalog.session_scope(settings.catalog_db_url) as s:
        for name in USERS:
            set_password(session=s, name=name, password=password(name))
    return {"contracts": [str(p) for p in contracts]}


def row_values(settings) -> set[str]:
    """Distinctive stored cell values (≥ 6 chars, not all digits: 6-digit region codes also
    occur in latency floats) of the three non-open credit datasets."""
    import pyarrow as pa

    from pipelines import Lakehouse

    lh = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    out: set[str] = set()
    for name in ("enterprise_registry", "tax_payment", "social_insurance"):
        t = lh.read(name)
        for col in t.column_names:
            if pa.types.is_string(t.schema.field(col).type) or pa.types.is_large_string(
                t.schema.field(col).type
            ):
                out |= {
                    v
                    for v in t[col].to_pylist()
                    if isinstance(v, str) and len(v) >= 6 and not v.isdigit()
                }
    return out


def spec_json(column: str = "taxpayer_id", max_items: int = 50, dataset: str = OWNED) -> str:
    return json.dumps(
        {
            "purpose": "信贷审批前核验企业纳税记录",
            "legal_basis": "企业授权书 2026-001",
            "dataset": dataset,
            "computation": {"name": "psi", "params": {"column": column, "max_items": max_items}},
            "inputs": {"request": "req.bin"},
        },
        ensure_ascii=False,
    )


REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a test server)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
