"""Fixtures of the catalog tests: a migrated SQLite catalog in a temp folder and a contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from catalog_testdata import make_contract
from sqlalchemy.orm import Session

import catalog
from govdx import Contract


@pytest.fixture
def db_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog.migrate(url)
    return url


@pytest.fixture
def session(db_url) -> Iterator[Session]:
    factory = catalog.open_catalog(db_url)
    with factory() as s:
        yield s
    factory.kw["bind"].dispose()


@pytest.fixture
def contract() -> Contract:
    return make_contract()
