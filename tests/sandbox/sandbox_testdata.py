"""Test data of the sandbox tests (no pytest here): contracts, a seeded dataset, users.

The dataset is written straight into the lakehouse (``Lakehouse.commit`` of a table that went
through ``pipelines._protect.protect``: protected columns SM4-encrypted, identifier token
columns added) and registered in the catalog, so these tests do not need the ingest DAG.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pyarrow as pa
import yaml

import catalog
from govdx import Contract, Settings
from pipelines._lakehouse import Lakehouse

RUN_1 = "0190b4c8-9f2a-7c3e-8d1b-2f4a6c8e0a1b"
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100 alphabet


def uscc_values(n: int, seed: int) -> list[str]:
    """n distinct 18-character USCC-shaped strings (check character not computed)."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("91" + "".join(rng.choice(USCC_CHARS) for _ in range(16)))
    return sorted(out)


def tax_contract(
    *,
    share: str = "conditional",
    sandbox: dict[str, Any] | None = None,
    tax_grade: str = "important",
    code: str = "SWJ-T001",
    name: str = "tax_test",
) -> Contract:
    """A tax-payment-shaped contract (税务局): uscc id, district, year, tax_paid."""
    data: dict[str, Any] = {
        "code": code,
        "name": name,
        "title": "企业纳税信息(测试)",
        "department": {"code": "SWJ", "name": "税务局"},
        "source": {"path": "tax.csv", "format": "csv"},
        "primary_key": ["taxpayer_id", "tax_year"],
        "share": {
            "type": share,
            **({"conditions": "用于信贷审批"} if share == "conditional" else {}),
        },
        "fields": [
            {"name": "taxpayer_id", "title": "纳税人识别号", "required": True, "element": "uscc"},
            {"name": "district", "title": "所属区县"},
            {"name": "tax_year", "title": "纳税年度", "type": "integer"},
            {
                "name": "tax_paid",
                "title": "实缴税额",
                "type": "decimal",
                "precision": 18,
                "scale": 2,
                "grade": tax_grade,
            },
        ],
    }
    if sandbox is not None:
        # small seeded request sets: the minimum set size has its own test
        data["sandbox"] = {"psi_min_items": 1, **sandbox}
    return Contract.from_dict(data)


def tax_table(ids: list[str], seed: int = 7) -> pa.Table:
    """Plain rows of :func:`tax_contract`: one row per id, 3 districts, amounts in yuan."""
    rng = random.Random(seed)
    districts = ["福田区", "南山区", "罗湖区"]
    return pa.table(
        {
            "taxpayer_id": pa.array(ids, pa.string()),
            "district": pa.array([districts[i % 3] for i in range(len(ids))], pa.string()),
            "tax_year": pa.array([2023] * len(ids), pa.int64()),
            "tax_paid": pa.array(
                [Decimal(rng.randint(100, 10_000_00)) / 100 for _ in ids], pa.decimal128(18, 2)
            ),
        }
    )


def publish_dataset(
    settings: Settings,
    contract: Contract,
    table: pa.Table,
    *,
    digest: str = SM3_ABC,
    published: bool = True,
) -> int:
    """Protect, commit, register ``table`` as a version and publish the entry; returns it."""
    from pipelines._protect import protect
    from privacy import keyring_from_settings

    protected = protect(table, contract, keyring=keyring_from_settings(settings))
    lh = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    res = lh.commit(contract.name, protected, digest=digest, run_id=RUN_1)
    with catalog.session_scope(settings.catalog_db_url) as s:
        ds = catalog.upsert_dataset(
            session=s,
            contract=contract,
            contract_yaml=yaml.safe_dump(
                contract.model_dump(mode="json", exclude_none=True), allow_unicode=True
            ),
        )
        catalog.add_version(
            session=s,
            dataset=ds,
            delta_version=res.version,
            row_count=table.num_rows,
            quarantined_count=0,
            source_digest=digest,
            source_name="tax.csv",
            source_bytes=1,
            run_id=RUN_1,
        )
        if published:
            catalog.set_published(session=s, code=contract.code, published=True)
    return res.version


def add_users(box: Any) -> None:
    """requester bank (ICBC), SWJ steward, SCJG steward, two reviewers, an admin."""
    box.add_user("bank", "requester", "ICBC")
    box.add_user("bank2", "requester", "CCB")
    box.add_user("swj_steward", "steward", "SWJ")
    box.add_user("swj_steward2", "steward", "SWJ")
    box.add_user("scjg_steward", "steward", "SCJG")
    box.add_user("rev1", "reviewer")
    box.add_user("rev2", "reviewer")
    box.add_user("root", "admin")


def valid_usccs(n: int, seed: int) -> list[str]:
    """n distinct valid USCCs (GB 32100-2015 check character, GB 11714 org-code check)."""
    from quality._identifiers import is_valid_uscc, org_code_check_char, uscc_check_char

    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        first8 = f"{rng.randrange(10**8):08d}"
        first17 = "91440300" + first8 + org_code_check_char(first8)
        code = first17 + uscc_check_char(first17)
        assert is_valid_uscc(code)
        out.add(code)
    return sorted(out)


# sandbox block of the runner/PSI tests (extra test computations registered by sandbox_fakes)
AGG_POLICY = {
    "allowed_computations": [
        "psi",
        "aggregate",
        "test_sleep",
        "test_hog",
        "test_die",
        "test_leak",
        "test_crash",
    ],
    "psi_columns": ["taxpayer_id"],
    "sum_columns": ["tax_paid"],  # the steward consents to sums over this protected field
    "psi_max_items": 1000,
    "psi_items_per_day": 5000,
    "min_group_size_k": 10,
    "quota_jobs_per_day": 50,
    "time_limit_seconds": 60,
    "memory_limit_mb": 2048,
}
