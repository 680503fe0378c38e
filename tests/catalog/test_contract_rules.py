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
