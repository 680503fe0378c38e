"""Quarantine rows of protected fields: masked for people, encrypted for the steward to recover."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from govdx import Contract
from pipelines._protect import protect_rejects
from privacy import Keyring, LocalKms, decrypt_column

KEK_HEX = "000102030405060708090a0b0c0d0e0f"


def _contract() -> Contract:
    return Contract.from_dict(
        {
            "code": "TJJ-P001",
            "name": "protect_test",
            "title": "隔离加密测试",
            "department": {"code": "TJJ", "name": "国家统计局"},
            "source": {"path": "x.csv", "format": "csv"},
            "share": {"type": "conditional", "conditions": "test"},
            "fields": [
                {"name": "resident_id", "element": "resident_id", "pi": "sensitive"},
                {"name": "phone", "element": "phone", "pi": "sensitive"},
                {"name": "city"},
            ],
        }
    )


def test_rejects_of_interleaved_protected_fields_decrypt_per_field(tmp_path: Path) -> None:
    """Rejects of two protected fields interleave row by row (and one unreadable line):
    filtering ``value_encrypted`` by ``field`` gives each field's cells back exactly, and the
    unprotected field's value is stored in the clear, not encrypted."""
    contract = _contract()
    ring = Keyring(tmp_path / "keys", LocalKms.from_hex(KEK_HEX))
    fields = ["resident_id", "phone", "city", "resident_id", None, "phone", "resident_id"]
    values = [
        "11010519491231002X",
        "13800138000",
        "北京",
        "110105194912310021",
        "raw,line,11010519491231002X",
        "13900139000",
        "1101051949123100",
    ]
    rejects = pa.table(
        {
            "_row": pa.array(range(2, 2 + len(values)), pa.int64()),
            "field": pa.array(fields, pa.string()),
            "value": pa.array(values, pa.string()),
            "reason": pa.array(["bad"] * len(values), pa.string()),
        }
    )
    q = protect_rejects(rejects, contract, keyring=ring, run_id="r1", digest="d1")
    key = ring.current(contract.code)
    assert q["value_encrypted"][2].as_py() is None
    assert q["value_masked"][2].as_py() == "北京"
    for name in ("resident_id", "phone", None):
        mask = (
            pc.is_null(q["field"])
            if name is None
            else pc.fill_null(pc.equal(q["field"], name), False)
        )
        cells = q.filter(mask)["value_encrypted"].combine_chunks()
        plain = decrypt_column(
            cells, key=key, dataset=contract.code, column=f"quarantine.{name or '_row'}"
        )
        assert plain.to_pylist() == [v for f, v in zip(fields, values, strict=True) if f == name]
        assert "11010519491231002X" not in "".join(q.filter(mask)["value_masked"].to_pylist())
