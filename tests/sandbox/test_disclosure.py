"""Disclosure control (pure functions) and the package's public surface."""

from __future__ import annotations

import inspect

import pyarrow as pa
import pytest

import sandbox
from sandbox import (
    DisclosureError,
    assert_no_row_values,
    bound_rows,
    leaked_values,
    release_digest,
    suppress_small_groups,
)


def test_suppress_small_groups_exact():
    t = pa.table({"g": ["a", "b", "c", "d"], "n": [10, 9, None, 250]})
    kept, dropped = suppress_small_groups(t, count_column="n", k=10)
    assert kept["g"].to_pylist() == ["a", "d"] and dropped == 2
    with pytest.raises(DisclosureError, match="no count column 'm'"):
        suppress_small_groups(t, count_column="m", k=10)


def test_bound_rows():
    t = pa.table({"x": list(range(5))})
    assert bound_rows(t, 5) is t
    with pytest.raises(DisclosureError, match=r"5 rows, more than sandbox\.max_output_rows = 4"):
        bound_rows(t, 4)


def test_leak_scan_names_columns_never_values():
    src = pa.table({"uscc": ["91440300180340634J", "914403000847005483"], "amount": [1, 2]})
    clean = pa.table({"g": ["南山区"], "n": [12]})
    dirty = pa.table({"g": ["南山区", "91440300180340634J"], "n": [12, 1]})
    assert leaked_values(clean, src, ["uscc"]) == []
    assert leaked_values(dirty, src, ["uscc"]) == [("g", "uscc")]
    with pytest.raises(DisclosureError) as info:
        assert_no_row_values(dirty, src, ["uscc"])
    assert "91440300180340634J" not in str(info.value)


def test_release_digest_is_sm3():
    assert (
        release_digest(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_all_is_complete_and_documented():
    public = {
        n for n, v in vars(sandbox).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public == set(sandbox.__all__)
    undocumented = [
        n
        for n in sandbox.__all__
        if callable(getattr(sandbox, n)) and not getattr(sandbox, n).__doc__
    ]
    assert undocumented == []
