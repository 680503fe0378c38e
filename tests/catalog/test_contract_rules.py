"""Contract rules a catalog entry must keep whichever way it is written (file, upload, PATCH)."""

from __future__ import annotations

import pytest
from catalog_testdata import contract_dict

from govdx import Contract, ContractError


def test_protected_data_is_never_opened_unconditionally():
    data = contract_dict(open={"type": "unconditional"})
    with pytest.raises(ContractError, match=r"open\.type: 'unconditional' \(无条件开放\)") as err:
        Contract.from_dict(data, path="x.yaml")
    assert "['legal_rep_id', 'reg_capital']" in str(err.value)
    # conditional opening stays possible; without protected fields unconditional is fine
    ok = Contract.from_dict(contract_dict(open={"type": "conditional", "conditions": "脱敏后"}))
    assert ok.open.type.value == "conditional"
    plain = contract_dict(open={"type": "unconditional"})
    plain["fields"] = [f for f in plain["fields"] if f["name"] in ("uscc", "ent_name")]
    assert Contract.from_dict(plain).open.type.value == "unconditional"


def test_broken_yaml_is_one_line_with_its_position(tmp_path):
    from govdx import load_contract

    p = tmp_path / "broken.yaml"
    p.write_text('code: "SCJG-1\nname: x\n', encoding="utf-8")
    with pytest.raises(ContractError) as err:
        load_contract(p)
    assert str(err.value) == (
        f"{p}: not valid YAML at line 3, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar)"
    )
