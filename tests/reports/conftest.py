"""The seeded scenario the report tests compute their expected figures from, by hand.

Built once per session: the 信易贷 demo (300 enterprises) ingested into a fresh home, two more
catalog entries without data (TJJ-T001 unconditional + open, SCJG-T002 not shared), a
department without entries (GAJ), and seven sandbox jobs run through ``sandbox.Sandbox`` on a
controlled clock::

    job  requester     dataset    submitted  decision                       then
    J1   bank_credit   SWJ-0001   T0         approved at T0+30min (1800 s)  run, released T0+1h
    J2   bank_credit   SCJG-0001  T0+1h      approved at T0+3h   (7200 s)   run, released T0+3h30
    J3   swj_analyst   SWJ-0001   T0+4h      approved at T0+4h10 (600 s)    run, released T0+4h30
    J4   bank_credit   RSJ-0001   T0+5h      rejected "用途不明确" (3600 s)
    J5   bank_credit   RSJ-0001   T0+6h      rejected "用途不明确" (120 s)
    J6   bank_credit   SCJG-0001  T0+7h      rejected "超出授权范围" (900 s)
    J7   bank_credit   SWJ-0001   T0+8h      (awaiting approval)

T0 is tomorrow 00:00 UTC, so every catalog entry exists before the jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import yaml

import catalog
import pipelines
from govdx import Contract, Settings
from govdx.demo import write_credit_demo
from sandbox import Sandbox, parse_job_spec


class Clock:
    """A settable UTC clock for the sandbox."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@dataclass
class Scenario:
    settings: Settings
    demo_dir: Path
    t0: datetime
    jobs: dict[str, str] = field(default_factory=dict)


def _extra_contract(
    code: str, name: str, dept: dict, share: dict, open_: dict
) -> tuple[Contract, str]:
    data = {
        "code": code,
        "name": name,
        "title": f"测试条目 {code}",
        "department": dept,
        "source": {"path": "x.csv", "format": "csv"},
        "share": share,
        "open": open_,
        "fields": [
            {"name": "uscc", "title": "统一社会信用代码", "element": "uscc"},
            {
                "name": "legal_rep_id",
                "title": "法定代表人身份证号",
                "element": "resident_id",
                "grade": "important",
                "pi": "sensitive",
            },
            {"name": "reg_capital", "title": "注册资本", "type": "decimal", "scale": 2},
        ],
    }
    return Contract.from_dict(data), yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from privacy import PsiClientSession

    root = tmp_path_factory.mktemp("reports")
    settings = Settings(home=root / "home")
    settings.ensure_home()
    files, contracts = write_credit_demo(root / "demo", rows=300, seed=20261129)
    for c, column in zip(contracts, ("uscc", "taxpayer_id", "employer_uscc"), strict=True):
        # the jobs below are PSI jobs: pin each contract's sandbox block, whatever the demo ships
        data = yaml.safe_load(c.read_text(encoding="utf-8"))
        data["sandbox"] = {
            "allowed_computations": ["psi"],
            "psi_columns": [column],
            "quota_jobs_per_day": 10,
            "psi_min_items": 1,
        }
        c.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        pipelines.ingest(c, settings=settings)
        with catalog.session_scope(settings.catalog_db_url) as s:  # jobs need a published entry
            catalog.set_published(session=s, code=data["code"], published=True)
    with catalog.session_scope(settings.catalog_db_url) as s:
        for args in (
            (
                "TJJ-T001",
                "tjj_test",
                {"code": "TJJ", "name": "统计局"},
                {"type": "unconditional"},
                # protected fields are never opened unconditionally (govdx._contract)
                {"type": "conditional", "conditions": "申请开放"},
            ),
            (
                "SCJG-T002",
                "scjg_closed",
                {"code": "SCJG", "name": "市场监督管理局"},
                {"type": "none"},
                {"type": "none"},
            ),
        ):
            contract, text = _extra_contract(*args)
            catalog.upsert_dataset(session=s, contract=contract, contract_yaml=text)
        s.add(catalog.Department(code="GAJ", name="公安局"))

    now = datetime.now(UTC)
    t0 = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    clock = Clock(t0)
    box = Sandbox(settings, clock=clock)
    for name, role, dept in [
        ("bank_credit", "requester", "BANK"),
        ("swj_analyst", "analyst", "SWJ"),
        ("swj_steward", "steward", "SWJ"),
        ("rsj_steward", "steward", "RSJ"),
        ("scjg_steward", "steward", "SCJG"),
        ("reviewer_1", "reviewer", None),
    ]:
        box.add_user(name, role, dept, actor="test")
    applicants = pacsv.read_csv(
        files.bank_applicants,
        convert_options=pacsv.ConvertOptions(column_types={"统一社会信用代码": "string"}),
    )["统一社会信用代码"].to_pylist()[:20]
    _, request = PsiClientSession.create(applicants, reveal_intersection=False, element="uscc")
    req = root / "psi_request.bin"
    req.write_bytes(request.to_bytes())

    def spec(dataset: str, column: str):
        return parse_job_spec(
            {
                "purpose": "信贷审批前核验申请企业（仅交集数量）",
                "legal_basis": "企业授权书",
                "dataset": dataset,
                "version": "current",
                "computation": {"name": "psi", "params": {"column": column, "max_items": 20}},
                "inputs": {"request": str(req)},
            }
        )

    def at(**kw: int) -> None:
        clock.t = t0 + timedelta(**kw)

    sc = Scenario(settings=settings, demo_dir=root / "demo", t0=t0)
    try:
        at(hours=0)
        j = box.submit(spec("SWJ-0001", "taxpayer_id"), user="bank_credit")["id"]
        at(minutes=10)
        box.approve(j, user="swj_steward")
        at(minutes=30)
        box.approve(j, user="reviewer_1")
        at(minutes=40)
        box.run(j)
        at(hours=1)
        box.result(j, user="bank_credit")
        sc.jobs["J1"] = j

        at(hours=1)
        j = box.submit(spec("SCJG-0001", "uscc"), user="bank_credit")["id"]
        at(hours=2)
        box.approve(j, user="reviewer_1")
        at(hours=3)
        box.approve(j, user="scjg_steward")
        at(hours=3, minutes=10)
        box.run(j)
        at(hours=3, minutes=30)
        box.result(j, user="bank_credit")
        sc.jobs["J2"] = j

        at(hours=4)
        j = box.submit(spec("SWJ-0001", "taxpayer_id"), user="swj_analyst")["id"]
        at(hours=4, minutes=5)
        box.approve(j, user="swj_steward")
        at(hours=4, minutes=10)
        box.approve(j, user="reviewer_1")
        at(hours=4, minutes=20)
        box.run(j)
        at(hours=4, minutes=30)
        box.result(j, user="swj_analyst")
        sc.jobs["J3"] = j

        for key, hours, dataset, column, who, secs, reason in (
            ("J4", 5, "RSJ-0001", "employer_uscc", "rsj_steward", 3600, "用途不明确"),
            ("J5", 6, "RSJ-0001", "employer_uscc", "reviewer_1", 120, "用途不明确"),
            ("J6", 7, "SCJG-0001", "uscc", "scjg_steward", 900, "超出授权范围"),
        ):
            at(hours=hours)
            j = box.submit(spec(dataset, column), user="bank_credit")["id"]
            at(hours=hours, seconds=secs)
            box.reject(j, user=who, reason=reason)
            sc.jobs[key] = j
        at(hours=8)
        sc.jobs["J7"] = box.submit(spec("SWJ-0001", "taxpayer_id"), user="bank_credit")["id"]
    finally:
        box.close()
    yield sc


@pytest.fixture
def session(scenario: Scenario) -> Iterator:
    factory = catalog.open_catalog(scenario.settings.catalog_db_url)
    with factory() as s:
        yield s
    factory.kw["bind"].dispose()


@pytest.fixture
def lake(scenario: Scenario) -> pipelines.Lakehouse:
    return pipelines.Lakehouse(scenario.settings.lakehouse_dir, scenario.settings.quarantine_dir)
