"""Masking (脱敏) of identifier values for display: quarantine reports, errors, logs.

Rules follow common practice for GB/T 35273-2020 去标识化 display: keep enough to recognise a
value, never enough to re-identify it.

| element | rule | example |
| --- | --- | --- |
| resident_id | first 6 (region) + last 2 | ``110105**********2X`` |
| phone | first 3 + last 2 | ``138******78`` |
| person_name | first character | ``张**`` |
| other protected | length only | ``*** (12 chars)`` |
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def mask_value(value: str | None, element: str | None) -> str | None:
    """Mask one value for display. ``None`` stays ``None``.

    Args:
        value: the plaintext value.
        element: the field's data element (resident_id, phone, person_name, ...).

    Returns:
        The masked string.
    """
    if value is None:
        return None
    return mask_array(pa.array([value], pa.string()), element)[0].as_py()


def mask_array(values: pa.Array, element: str | None) -> pa.Array:
    """Vectorized :func:`mask_value` (pyarrow.StringArray[n] → pyarrow.StringArray[n]).

    Values no longer than the kept head and tail are masked entirely.
    """
    values = pc.cast(values, pa.string())
    n = pc.utf8_length(values)
    keep = _KEEP.get(element or "")
    if keep is None:
        return pc.binary_join_element_wise("*** (", pc.cast(n, pa.string()), " chars)", "")
    head_n, tail_n = keep
    head = pc.utf8_slice_codeunits(values, 0, head_n)
    tail = (
        pc.utf8_slice_codeunits(values, -tail_n)
        if tail_n
        else pc.utf8_slice_codeunits(values, 0, 0)
    )
    stars = pc.binary_repeat("*", pc.max_element_wise(pc.subtract(n, head_n + tail_n), 0))
    masked = pc.binary_join_element_wise(head, stars, tail, "")
    return pc.if_else(pc.less_equal(n, head_n + tail_n), pc.binary_repeat("*", n), masked)


_KEEP: dict[str, tuple[int, int]] = {
    "resident_id": (6, 2),
    "phone": (3, 2),
    "person_name": (1, 0),
}
