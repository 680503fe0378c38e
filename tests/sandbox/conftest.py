"""Fixtures of the sandbox tests: a migrated home, a seeded dataset, users, a Sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sandbox_fakes  # noqa: F401 - registers the fake computations
from sandbox_testdata import (
    AGG_POLICY,
    add_users,
    publish_dataset,
    tax_contract,
    tax_table,
    valid_usccs,
)

from sandbox import Sandbox


@pytest.fixture
def ids() -> list[str]:
    return valid_usccs(60, seed=1)


@pytest.fixture
def box(settings, ids) -> Iterator[Sandbox]:
    b = Sandbox(settings)
    add_users(b)
    publish_dataset(settings, tax_contract(sandbox=AGG_POLICY), tax_table(ids))
    yield b
    b.close()
