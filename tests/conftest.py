"""Shared fixtures: a clean GOVDX_* environment and a fresh home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from govdx import Contract, Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GOVDX_* variable leaks in from the machine; each test gets its own home."""
    for key in list(os.environ):
        if key.startswith("GOVDX_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GOVDX_HOME", str(tmp_path / "home"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home")
    s.ensure_home()
    return s


def make_contract(**overrides) -> Contract:
    """A small valid contract (enterprise registry shape); keys in ``overrides`` replace."""
    data = {
        "code": "SCJG-T001",
        "name": "enterprise_test",
        "title": "企业登记信息(测试)",
        "department": {"code": "SCJG", "name": "市场监督管理局"},
        "summary": "测试",
        "source": {"path": "enterprise.csv", "format": "csv"},
        "primary_key": ["uscc"],
        "share": {"type": "conditional", "conditions": "用于信贷审批"},
        "open": {"type": "none"},
        "update_cycle": "monthly",
        "quality": {"min_pass_rate": 0.5},
        "fields": [
            {"name": "uscc", "title": "统一社会信用代码", "required": True, "element": "uscc"},
            {
                "name": "legal_rep_id",
                "title": "法定代表人身份证号",
                "element": "resident_id",
                "grade": "important",
                "pi": "sensitive",
            },
            {"name": "reg_capital", "title": "注册资本(万元)", "type": "decimal", "scale": 2},
        ],
    }
    data.update(overrides)
    return Contract.from_dict(data)
