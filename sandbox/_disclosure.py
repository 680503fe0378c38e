"""Disclosure control (输出审查): what may leave the sandbox. Pure functions over Arrow.

* :func:`suppress_small_groups` — drop groups with fewer than k rows (小组抑制; the k
  threshold of k-anonymity, Sweeney 2002), returning how many were dropped;
* :func:`bound_rows` — refuse an output with more rows than the policy allows;
* :func:`leaked_values` / :func:`assert_no_row_values` — scan an output for any cell equal to
  a value of the dataset's identifier (or any chosen) columns; a non-owner's result must
  contain none. Vectorised with ``pyarrow.compute.is_in`` (one hash-set build per column);
* :func:`release_digest` — SM3 (GB/T 32905-2016) of the released bytes, recorded per release.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from privacy._digest import sm3_hex
from sandbox._errors import RunError


class DisclosureError(RunError):
    """An output failed disclosure control (输出审查未通过); it is never released."""


def suppress_small_groups(table: pa.Table, *, count_column: str, k: int) -> tuple[pa.Table, int]:
    """Drop the groups whose count is below ``k``.

    Args:
        table: pyarrow.Table[groups × columns] with an integer ``count_column`` (rows per group).
        count_column: name of the count column.
        k: minimum group size (≥ 1).

    Returns:
        (the table without small groups, number of groups suppressed).

    Raises:
        DisclosureError: ``count_column`` is missing or k < 1.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.table({"g": ["a", "b"], "n": [12, 3]})
        >>> kept, dropped = suppress_small_groups(t, count_column="n", k=10)
        >>> kept["g"].to_pylist(), dropped
        (['a'], 1)
    """
    if k < 1:
        raise DisclosureError(f"k must be ≥ 1, got {k}")
    if count_column not in table.column_names:
        raise DisclosureError(f"output has no count column {count_column!r} to check k against")
    keep = pc.fill_null(pc.greater_equal(table[count_column], k), False)
    kept = table.filter(keep)
    return kept, table.num_rows - kept.num_rows


def bound_rows(table: pa.Table, max_rows: int) -> pa.Table:
    """Return ``table`` if it has at most ``max_rows`` rows.

    Raises:
        DisclosureError: more rows than ``max_rows`` (sandbox.max_output_rows).
    """
    if table.num_rows > max_rows:
        raise DisclosureError(
            f"output has {table.num_rows} rows, more than sandbox.max_output_rows = {max_rows} "
            "(输出超出上限)"
        )
    return table


def leaked_values(
    output: pa.Table, source: pa.Table, columns: Iterable[str]
) -> list[tuple[str, str]]:
    """Cells of ``output`` equal to a value of ``source[columns]`` (compared as strings).

    Args:
        output: pyarrow.Table[rows × any columns], the result to check.
        source: pyarrow.Table of the dataset (plaintext of the checked columns).
        columns: source columns whose values must not appear (identifiers, keys).

    Returns:
        (output column, source column) pairs that share at least one value; empty when clean.
        The values themselves are never returned (they are what must not leak).
    """
    hits: list[tuple[str, str]] = []
    out_cols = {
        name: pc.cast(output[name], pa.string())
        for name in output.column_names
        if _castable(output[name].type)
    }
    for col in columns:
        values = pc.unique(pc.cast(source[col], pa.string()).drop_null())
        if len(values) == 0:
            continue
        for name, cells in out_cols.items():
            if pc.any(pc.is_in(cells, value_set=values)).as_py():
                hits.append((name, col))
    return hits


def assert_no_row_values(output: pa.Table, source: pa.Table, columns: Iterable[str]) -> None:
    """Refuse an output holding any value of ``source[columns]``.

    Raises:
        DisclosureError: naming the output and source columns (never the value).
    """
    hits = leaked_values(output, source, columns)
    if hits:
        pairs = ", ".join(f"{o!r}←{s!r}" for o, s in hits)
        raise DisclosureError(
            f"output carries row-level values of the dataset ({pairs}); not released"
        )


def release_digest(data: bytes) -> str:
    """SM3 digest (64 lowercase hex) of released bytes (GB/T 32905-2016)."""
    return sm3_hex(data)


def _castable(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t))
