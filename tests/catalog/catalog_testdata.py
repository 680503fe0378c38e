"""Test data of the catalog tests: SM3 vectors, run ids and a valid contract (no pytest here)."""

from __future__ import annotations

from typing import Any

from govdx import Contract

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"  # SM3("abc")
SM3_EMPTY = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"  # SM3("")
RUN_1 = "0190b4c8-9f2a-7c3e-8d1b-2f4a6c8e0a1b"
RUN_2 = "0190b4c9-0000-7000-8000-000000000002"
RUN_3 = "0190b4ca-0000-7000-8000-000000000003"


def contract_dict(**overrides: Any) -> dict[str, Any]:
    """A valid contract mapping (市场监督管理局 enterprise registry), with top-level overrides."""
    data: dict[str, Any] = {
        "code": "SCJG-0001",
        "name": "enterprise_registry",
        "title": "企业登记信息",
        "department": {"code": "SCJG", "name": "市场监督管理局"},
        "summary": "在本市登记的企业基本信息",
        "source": {"path": "data/enterprise.csv", "format": "csv"},
        "primary_key": ["uscc"],
        "share": {"type": "conditional", "conditions": "用于信贷审批"},
        "open": {"type": "none"},
        "update_cycle": "monthly",
        "fields": [
            {"name": "uscc", "title": "统一社会信用代码", "required": True, "element": "uscc"},
            {"name": "ent_name", "title": "企业名称", "required": True},
            {
                "name": "legal_rep_id",
                "title": "法定代表人身份证号",
                "element": "resident_id",
                "pi": "sensitive",
            },
            {
                "name": "reg_capital",
                "title": "注册资本",
                "type": "decimal",
                "unit": "万元",
                "grade": "important",
            },
            {"name": "region_code", "title": "行政区划代码", "element": "region_code"},
        ],
    }
    data.update(overrides)
    return data


def make_contract(**overrides: Any) -> Contract:
    return Contract.from_dict(contract_dict(**overrides))
