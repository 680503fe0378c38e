"""Parse step (解析): a department file → an Arrow table of strings, bad records set aside.

Reads CSV (UTF-8, UTF-8 with BOM, GBK, GB18030), XLSX and JSON (array, JSON Lines or a tree) as
its :class:`govdx.Source` declares, keeps every value as the text the file holds (identifiers
never go through a number: no lost leading zeros, no float IDs, no scientific notation), adds
``_row``, the 1-based place of each record in the source file, and sets aside records that cannot
be read (wrong field count, bad JSON) as rejects with a reason. Typing is the next step
(:func:`pipelines._cast.cast_table`), after :func:`map_columns` has matched source columns to the
contract's fields.

Encodings are found by strict decoding, not by libmagic (which takes GBK for ISO-8859): UTF-8
BOM → ``utf-8-sig``; strict UTF-8 → ``utf-8``; else strict GB18030 (GBK's superset, holding the
rare name characters GBK lacks, GB 18030-2022) → ``gb18030``. Non-UTF-8 input is transcoded to
UTF-8 once, in bulk, before pyarrow parses it.

Libraries: pyarrow.csv (Apache Arrow CSV reader, ``invalid_row_handler``), openpyxl (XLSX),
the standard ``json`` module.
"""

from __future__ import annotations

import io
import json
import math
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from govdx import Contract, Source
from pipelines._errors import MissingColumnError, SourceError

__all__ = [
    "REJECTS_SCHEMA",
    "RawRead",
    "detect_encoding",
    "empty_rejects",
    "map_columns",
    "read_source",
]

#: Characters stripped from header names and values: ASCII whitespace, NBSP, ideographic space
#: (U+3000), the Unicode space separators, zero-width space and a stray BOM (U+FEFF).
WHITESPACE = (
    " \t\n\r\v\f\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
)

#: Schema of reject tables (隔离记录): one row per unreadable record or failing cell.
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("_row", pa.int64(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("value", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

_UTF8_BOM = b"\xef\xbb\xbf"


def empty_rejects() -> pa.Table:
    """An empty reject table, ``pyarrow.Table[0 × (_row int64, field, value, reason string)]``."""
    return REJECTS_SCHEMA.empty_table()


@dataclass(frozen=True)
class RawRead:
    """What :func:`read_source` got out of a file.

    Attributes:
        table: ``pyarrow.Table[rows × (source columns..., _row)]``; every source column is
            ``pa.string()`` holding the text as in the file (CSV: empty cells are ``''``; XLSX,
            JSON: empty cells are null), header names stripped of whitespace/NBSP/BOM; ``_row``
            (int64) is the record's 1-based place in the file: CSV the physical line where the
            record starts, XLSX the sheet row, JSON the record index (JSON Lines: the line).
        rejects: ``pyarrow.Table[rejected × (_row int64, field string, value string,
            reason string)]``, records that could not be read (``field`` is null, ``value``
            holds the record's text).
        encoding: ``utf-8``, ``utf-8-sig`` or ``gb18030`` (``utf-8`` for XLSX).
        rows_in: data records seen (rows): ``table.num_rows`` + distinct rejected rows.
        rows_skipped: fully empty records skipped (rows), not counted in ``rows_in``.
    """

    table: pa.Table
    rejects: pa.Table
    encoding: str
    rows_in: int
    rows_skipped: int = 0


# --- encodings ----------------------------------------------------------------------------


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _detect(data: bytes, file: str | None) -> tuple[str, str | None]:
    """(encoding, text decoded as GB18030 when that is what it took, else None)."""
    if data.startswith(_UTF8_BOM):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"starts with a UTF-8 BOM but byte {exc.start} (0x{data[exc.start]:02x}) is not "
                "UTF-8 (文件带 UTF-8 BOM 但含非 UTF-8 字节)",
                file=file,
                row=_line_of(data, exc.start),
            ) from exc
        return "utf-8-sig", None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as utf8_exc:
        try:
            return "gb18030", data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"neither UTF-8 nor GB18030 (编码无法识别): byte {exc.start} "
                f"(0x{data[exc.start]:02x}) does not decode as GB18030; the first non-UTF-8 "
                f"byte is at offset {utf8_exc.start} (line {_line_of(data, utf8_exc.start)})",
                file=file,
                row=_line_of(data, exc.start),
            ) from exc
    return "utf-8", None


def detect_encoding(data: bytes, *, file: str | None = None) -> str:
    """Find a file's text encoding by strict decoding (not libmagic).

    Order: a UTF-8 BOM → ``'utf-8-sig'``; the whole buffer decodes as strict UTF-8 →
    ``'utf-8'`` (pure ASCII included); it decodes as strict GB18030 (GB 18030-2022, a superset
    of GBK and GB 2312) → ``'gb18030'``.

    Args:
        data: the file's bytes.
        file: the file name, for messages.

    Returns:
        ``'utf-8-sig'``, ``'utf-8'`` or ``'gb18030'``.

    Raises:
        SourceError: neither decodes; names the file, the line (``row``) and the byte offset of
            the first undecodable byte.

    Examples:
        >>> detect_encoding("地区".encode("gbk"))
        'gb18030'
        >>> detect_encoding(b"\\xef\\xbb\\xbfcode")
        'utf-8-sig'
    """
    return _detect(data, file)[0]


def _to_utf8(data: bytes, declared: str, file: str) -> tuple[bytes, str]:
    """Validate/transcode the whole buffer to UTF-8 (no BOM). Returns (bytes, encoding used)."""
    if declared == "auto":
        enc, text = _detect(data, file)
        if enc == "utf-8-sig":
            return data[3:], enc
        if enc == "utf-8":
            return data, enc
        assert text is not None
        return text.encode("utf-8"), enc
    if declared == "utf-8":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            hint = ""
            try:
                data.decode("gb18030")
                hint = "; it decodes as GB18030/GBK (看起来是 GBK/GB18030 编码): declare encoding gbk or auto"
            except UnicodeDecodeError:
                pass
            raise SourceError(
                f"declared utf-8 but byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8 "
                f"(声明为 UTF-8 但不是){hint}",
                file=file,
                row=_line_of(data, exc.start),
            ) from exc
        if data.startswith(_UTF8_BOM):
            return data[3:], "utf-8-sig"
        return data, "utf-8"
    # gbk / gb18030: always decoded as GB18030, GBK's superset.
    if data.startswith(_UTF8_BOM):
        raise SourceError(
            f"declared {declared} but the file starts with a UTF-8 BOM (声明为 {declared} 但文件是 "
            "UTF-8): declare encoding utf-8 or auto",
            file=file,
            row=1,
        )
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise SourceError(
                f"declared {declared} but the file is valid UTF-8 with non-ASCII text (声明为 "
                f"{declared} 但文件是 UTF-8): declare encoding utf-8 or auto",
                file=file,
            )
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"declared {declared} but byte {exc.start} (0x{data[exc.start]:02x}) does not decode "
            f"as GB18030 (无法按 GB18030 解码)",
            file=file,
            row=_line_of(data, exc.start),
        ) from exc
    return text.encode("utf-8"), "gb18030"


# --- names --------------------------------------------------------------------------------


def _clean_name(name: Any) -> str:
    return "" if name is None else unicodedata.normalize("NFC", str(name)).strip(WHITESPACE)


def _header_names(raw: Iterable[Any]) -> list[str]:
    """Stripped header names; blanks become ``column_<n>`` (1-based), repeats get ``.2``, ..."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, value in enumerate(raw, start=1):
        name = _clean_name(value) or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 1
        names.append(name)
    return names


def _is_blank_text(text: str, delimiter: str = "") -> bool:
    return not text.strip(WHITESPACE + delimiter + '"')


# --- CSV ----------------------------------------------------------------------------------


def _body_end(buf: bytes, start: int, footer_rows: int, delimiter: str, file: str) -> int:
    """End offset of the data: trailing blank lines and ``footer_rows`` footnote lines removed."""
    end = len(buf)
    removed = 0
    while end > start:
        stop = end - 1 if buf[end - 1 : end] == b"\n" else end
        line_start = max(buf.rfind(b"\n", start, stop) + 1, start)
        line = buf[line_start:stop].decode("utf-8", "replace")
        if _is_blank_text(line, delimiter):
            end = line_start
            continue
        if removed == footer_rows:
            break
        removed += 1
        end = line_start
    if removed < footer_rows:
        raise SourceError(
            f"footer_rows is {footer_rows} but only {removed} non-empty line(s) follow the "
            "header (脚注行数超过数据行数)",
            file=file,
        )
    return end


def _read_csv(buf: bytes, source: Source, file: str) -> tuple[pa.Table, pa.Table, int]:
    delim = source.delimiter
    pos = 0
    for i in range(source.header_row - 1):
        nl = buf.find(b"\n", pos)
        if nl < 0:
            raise SourceError(
                f"header_row is {source.header_row} but the file has {i + 1} line(s) "
                "(表头行超出文件行数)",
                file=file,
            )
        pos = nl + 1
    nl = buf.find(b"\n", pos)
    header_end = len(buf) if nl < 0 else nl + 1
    header = buf[pos:header_end]
    if _is_blank_text(header.decode("utf-8", "replace"), delim):
        raise SourceError("the header row is empty (表头行为空)", file=file, row=source.header_row)
    parse = pacsv.ParseOptions(delimiter=delim)
    try:
        found = pacsv.read_csv(pa.BufferReader(header), parse_options=parse).column_names
    except pa.ArrowInvalid as exc:
        raise SourceError(
            f"cannot read the header row (表头无法解析): {exc}", file=file, row=source.header_row
        ) from exc
    names = _header_names(found)
    first_line = source.header_row + 1
    end = _body_end(buf, header_end, source.footer_rows, delim, file)
    body = pa.py_buffer(buf)[header_end:end]

    invalid: list[tuple[int, int, int, str]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    if body.size == 0:
        table = pa.table({n: pa.array([], pa.string()) for n in names})
    else:
        try:
            table = pacsv.read_csv(
                pa.BufferReader(body),
                # use_threads=False: the reader then numbers invalid rows (InvalidRow.number).
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=1 << 22
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=delim,
                    newlines_in_values=True,
                    ignore_empty_lines=False,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise SourceError(f"cannot parse as CSV (CSV 解析失败): {exc}", file=file) from exc

    # Place every record: records are the table's rows and the invalid rows, interleaved in
    # file order; pyarrow numbers invalid rows by record, we need physical lines.
    n, m = table.num_rows, len(invalid)
    invalid.sort()
    inv_rec = np.fromiter((r[0] for r in invalid), dtype=np.int64, count=m)
    if m and (inv_rec < 1).any():  # pragma: no cover - guarded by use_threads=False
        raise SourceError("the CSV reader did not number the invalid rows", file=file)
    before = inv_rec - 1 - np.arange(m, dtype=np.int64)  # valid records before each invalid one
    idx = np.arange(n, dtype=np.int64)
    rec = idx + 1 + np.searchsorted(before, idx, side="right")
    total = n + m
    lines = buf.count(b"\n", header_end, end) + (end > header_end and buf[end - 1] != 0x0A)
    if lines == total:
        line_of_rec = np.arange(first_line, first_line + total, dtype=np.int64)
    else:  # quoted newlines: a record spans 1 + (newlines inside its values) lines
        extra = np.zeros(total, dtype=np.int64)
        for col in table.columns:
            extra[rec - 1] += pc.count_substring(col, "\n").to_numpy(zero_copy_only=False)
        extra[inv_rec - 1] += np.fromiter((r[3].count("\n") for r in invalid), np.int64, m)
        line_of_rec = first_line + np.arange(total, dtype=np.int64)
        line_of_rec[1:] += np.cumsum(extra)[:-1]
    table = table.append_column("_row", pa.array(line_of_rec[rec - 1], pa.int64()))

    # Fully empty records (blank lines, ',,,,') are skipped, not data.
    skipped = 0
    if n:
        first = pc.utf8_trim(table.column(0), WHITESPACE)
        cand = np.flatnonzero(pc.equal(first, "").to_numpy(zero_copy_only=False))
        if cand.size:
            sub = table.take(pa.array(cand))
            blank = np.ones(cand.size, dtype=bool)
            for col in sub.columns[1:-1]:
                blank &= pc.equal(pc.utf8_trim(col, WHITESPACE), "").to_numpy(zero_copy_only=False)
            drop = cand[blank]
            if drop.size:
                keep = np.ones(n, dtype=bool)
                keep[drop] = False
                table = table.filter(pa.array(keep))
                skipped += int(drop.size)

    rej_rows, rej_values, rej_reasons = [], [], []
    for r, expected, actual, text in invalid:
        if _is_blank_text(text, delim):
            skipped += 1
            continue
        rej_rows.append(int(line_of_rec[r - 1]))
        rej_values.append(text)
        rej_reasons.append(
            f"expected {expected} fields, found {actual} (字段数不符: 应为 {expected} 个, 实为 {actual} 个)"
        )
    rejects = pa.table(
        {
            "_row": pa.array(rej_rows, pa.int64()),
            "field": pa.nulls(len(rej_rows), pa.string()),
            "value": pa.array(rej_values, pa.string()),
            "reason": pa.array(rej_reasons, pa.string()),
        },
        schema=REJECTS_SCHEMA,
    )
    return table, rejects, skipped


# --- cell rendering (XLSX, JSON) ------------------------------------------------------------


def _render_float(v: float) -> str:
    if not math.isfinite(v):
        return repr(v)
    d = Decimal(repr(v))  # shortest round-trip text, then plain notation (no 1e+20, no 1e-05)
    if v.is_integer():
        d = d.to_integral_value()
    return format(d, "f")


def _render(v: Any) -> str | None:
    """A cell value as text: no float artefacts, ISO dates, text kept as text."""
    if v is None:
        return None
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return _render_float(v)
    if t is datetime:
        if v.tzinfo is None and v.time() == time(0):
            return v.date().isoformat()
        return v.isoformat()
    if isinstance(v, (date, time)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return str(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


def _columns_table(names: list[str], columns: list[list[str | None]], rows: list[int]) -> pa.Table:
    arrays = [pa.array(col, pa.string()) for col in columns]
    arrays.append(pa.array(rows, pa.int64()))
    return pa.Table.from_arrays(arrays, names=[*names, "_row"])


# --- XLSX ---------------------------------------------------------------------------------


def _merged_ranges(ws: Any) -> list[tuple[int, int, int, int]] | None:
    """Merged ranges of a read-only sheet as (min_col, min_row, max_col, max_row), 1-based."""
    from xml.etree.ElementTree import iterparse

    from openpyxl.utils.cell import range_boundaries

    get_source = getattr(ws, "_get_source", None)
    if get_source is None:  # pragma: no cover
        return None
    out = []
    with get_source() as src:
        for _, el in iterparse(src):
            if el.tag.endswith("}mergeCell") and el.get("ref"):
                out.append(range_boundaries(el.get("ref")))
            el.clear()
    return out


def _read_xlsx(data: bytes, source: Source, file: str) -> tuple[pa.Table, pa.Table, int]:
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    def load(read_only: bool) -> Any:
        try:
            with warnings.catch_warnings():
                # openpyxl warns about workbook features it does not read (data validation,
                # conditional formats); they carry no cell values.
                warnings.simplefilter("ignore", UserWarning)
                return openpyxl.load_workbook(io.BytesIO(data), read_only=read_only, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise SourceError(
                f"not a readable XLSX workbook (无法读取 XLSX 工作簿): {exc}", file=file
            ) from exc

    # Read-only mode streams one sheet (≈30× faster on file 05 than loading every sheet); the
    # merged ranges then come from the sheet's <mergeCells> element.
    wb = load(read_only=True)
    try:
        sheets = wb.sheetnames
        if source.sheet is None:
            ws = wb.worksheets[0]
        elif source.sheet in sheets:
            ws = wb[source.sheet]
        else:
            raise SourceError(
                f"no sheet {source.sheet!r} (工作表不存在); the workbook has {sheets}", file=file
            )
        title = ws.title
        grid = [list(r) for r in ws.iter_rows(min_row=1, values_only=True)]
        merged = _merged_ranges(ws) if source.fill_merged else []
    finally:
        wb.close()
    if merged is None:  # pragma: no cover - openpyxl without the streaming source accessor
        full = load(read_only=False)
        merged = [r.bounds for r in full[title].merged_cells.ranges]
        full.close()
    where = f"{file} [{title}]"
    width = max((len(r) for r in grid), default=0)
    for r in grid:
        if len(r) < width:
            r.extend([None] * (width - len(r)))
    for min_col, min_row, max_col, max_row in merged:
        if min_row > len(grid) or min_col > width:
            continue
        value = grid[min_row - 1][min_col - 1]
        for ri in range(min_row - 1, min(max_row, len(grid))):
            row = grid[ri]
            for ci in range(min_col - 1, min(max_col, width)):
                row[ci] = value
    if source.header_row > len(grid):
        raise SourceError(
            f"header_row is {source.header_row} but the sheet has {len(grid)} row(s) "
            "(表头行超出工作表行数)",
            file=where,
        )

    def blank(v: Any) -> bool:
        return v is None or (type(v) is str and not v.strip(WHITESPACE))

    header = grid[source.header_row - 1]
    data = grid[source.header_row :]
    first_row = source.header_row + 1
    keep_rows: list[int] = []
    for i, r in enumerate(data):
        if not all(blank(v) for v in r):
            keep_rows.append(i)
    skipped = len(data) - len(keep_rows)
    if source.footer_rows:
        if source.footer_rows > len(keep_rows):
            raise SourceError(
                f"footer_rows is {source.footer_rows} but only {len(keep_rows)} non-empty row(s) "
                "follow the header (脚注行数超过数据行数)",
                file=where,
            )
        keep_rows = keep_rows[: -source.footer_rows]
    # Trailing columns with neither a header nor any value are dropped.
    used = 0
    for ci in range(width - 1, -1, -1):
        if not blank(header[ci]) or any(not blank(data[i][ci]) for i in keep_rows):
            used = ci + 1
            break
    if used == 0:
        raise SourceError("the header row is empty (表头行为空)", file=where, row=source.header_row)
    names = _header_names(_render(v) for v in header[:used])
    columns = [[_render(data[i][ci]) for i in keep_rows] for ci in range(used)]
    table = _columns_table(names, columns, [first_row + i for i in keep_rows])
    return table, empty_rejects(), skipped


# --- JSON ---------------------------------------------------------------------------------


def _json_number(text: str) -> str:
    d = Decimal(text)
    if d == d.to_integral_value():
        d = d.to_integral_value()
    return format(d, "f")


def _loads(text: str) -> Any:
    return json.loads(
        text, parse_float=_json_number, parse_int=_json_number, parse_constant=lambda s: s
    )


def _scalar(v: Any) -> str | None:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return _render(v)


def _records_table(
    records: list[tuple[int, dict[str, Any]]], extra: list[str] | None = None
) -> pa.Table:
    names: dict[str, None] = {}
    for _, rec in records:
        for k in rec:
            names.setdefault(k, None)
    for k in extra or []:
        names.setdefault(k, None)
    keys = list(names)
    clean = _header_names(keys)
    columns = [[_scalar(rec.get(k)) for _, rec in records] for k in keys]
    return _columns_table(clean, columns, [r for r, _ in records])


def _reject_table(rows: list[tuple[int, str, str]]) -> pa.Table:
    return pa.table(
        {
            "_row": pa.array([r for r, _, _ in rows], pa.int64()),
            "field": pa.nulls(len(rows), pa.string()),
            "value": pa.array([v for _, v, _ in rows], pa.string()),
            "reason": pa.array([m for _, _, m in rows], pa.string()),
        },
        schema=REJECTS_SCHEMA,
    )


def _read_json(text: str, source: Source, file: str) -> tuple[pa.Table, pa.Table, int]:
    stripped = text.lstrip(WHITESPACE)
    bad: list[tuple[int, str, str]] = []
    records: list[tuple[int, dict[str, Any]]] = []
    if source.tree_children or stripped.startswith("["):
        try:
            doc = _loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(
                f"not valid JSON (JSON 格式错误): {exc.msg} at column {exc.colno}",
                file=file,
                row=exc.lineno,
            ) from exc
        if source.tree_children:
            return _read_tree(doc, source.tree_children, file)
        for i, item in enumerate(doc, start=1):
            if isinstance(item, dict):
                records.append((i, item))
            else:
                bad.append((i, _scalar(item) or "null", "not a JSON object (不是 JSON 对象)"))
    else:  # JSON Lines: one object per line; _row is the line number
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip(WHITESPACE):
                continue
            try:
                item = _loads(line)
            except json.JSONDecodeError as exc:
                bad.append((i, line, f"not valid JSON (JSON 格式错误): {exc.msg}"))
                continue
            if isinstance(item, dict):
                records.append((i, item))
            else:
                bad.append((i, line, "not a JSON object (不是 JSON 对象)"))
        return _records_table(records), _reject_table(bad), 0
    return _records_table(records), _reject_table(bad), 0


def _read_tree(doc: Any, children_key: str, file: str) -> tuple[pa.Table, pa.Table, int]:
    roots = doc if isinstance(doc, list) else [doc]
    first_key: str | None = None
    for node in roots:
        if isinstance(node, dict):
            first_key = next(
                (
                    k
                    for k, v in node.items()
                    if k != children_key and not isinstance(v, (dict, list))
                ),
                None,
            )
            break
    if first_key is None:
        raise SourceError(
            "JSON tree: the first root node has no scalar key to link children to their parent "
            "(树形 JSON 的根节点没有标量键)",
            file=file,
            row=1,
        )
    parent_col = f"parent_{first_key}"
    records: list[tuple[int, dict[str, Any]]] = []
    bad: list[tuple[int, str, str]] = []
    stack: list[tuple[Any, Any, int]] = [(n, None, 1) for n in reversed(roots)]
    index = 0
    while stack:
        node, parent, level = stack.pop()
        index += 1
        if not isinstance(node, dict):
            bad.append(
                (
                    index,
                    _scalar(node) or "null",
                    "tree node is not a JSON object (树节点不是 JSON 对象)",
                )
            )
            continue
        kids = node.get(children_key) or []
        if not isinstance(kids, list):
            bad.append(
                (index, _scalar(kids) or "", f"{children_key!r} is not a list (子节点不是数组)")
            )
            continue
        row = {k: v for k, v in node.items() if k != children_key}
        for k in (parent_col, "level"):
            if k in row:
                raise SourceError(
                    f"JSON tree: node key {k!r} clashes with the added column (键名冲突)",
                    file=file,
                    row=index,
                    column=k,
                )
        row[parent_col] = parent
        row["level"] = str(level)
        records.append((index, row))
        me = node.get(first_key)
        stack.extend((kid, me, level + 1) for kid in reversed(kids))
    return _records_table(records, [parent_col, "level"]), _reject_table(bad), 0


# --- entry points ---------------------------------------------------------------------------

_Reader = Callable[[bytes, Source, str], tuple[pa.Table, pa.Table, int]]


def read_source(path: str | Path, source: Source, *, data: bytes | None = None) -> RawRead:
    """Read a department file as its contract's ``source`` declares, every value as text.

    CSV goes through ``pyarrow.csv`` (all columns ``pa.string()``, so identifiers keep their
    leading zeros and trailing ``X`` whatever the first rows look like); rows with a wrong field
    count are set aside through ``ParseOptions(invalid_row_handler=...)``, never dropped.
    ``header_row - 1`` lines above the header and ``footer_rows`` non-empty lines at the end
    (统计报表脚注) are not data. XLSX goes through openpyxl (cached formula values, merged
    ranges filled from their top-left cell when ``fill_merged``). JSON is an array of objects,
    JSON Lines, or a tree (``tree_children``): every node is a row with its scalar keys plus
    ``parent_<first key>`` (the parent's value of the first scalar key, null at a root) and
    ``level`` (1 = root).

    Args:
        path: the file (named in messages; read only when ``data`` is not given).
        source: the contract's :class:`govdx.Source` (format, encoding, header_row, ...).
        data: the file's bytes when already in memory (e.g. a landed copy), else ``None``.

    Returns:
        :class:`RawRead` with ``table: pyarrow.Table[rows × (source columns: string..., _row:
        int64)]``, ``rejects``, ``encoding``, ``rows_in`` and ``rows_skipped``.

    Raises:
        SourceError: unreadable file, undecodable bytes (names the line), header row past the
            end, unknown sheet (lists the sheets), malformed JSON document.

    Examples:
        >>> import tempfile, pathlib
        >>> from govdx import Source
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "ids.csv"
        >>> _ = p.write_bytes("代码,名称\\n0012,北京\\n".encode("gbk"))
        >>> raw = read_source(p, Source(path=str(p), format="csv"))
        >>> raw.encoding, raw.table.column("代码").to_pylist(), raw.table.column("_row").to_pylist()
        ('gb18030', ['0012'], [2])
    """
    p = Path(path)
    file = str(path)
    if data is None:
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise SourceError(
                f"cannot read the file (无法读取文件): {exc.strerror}", file=file
            ) from exc
    if source.format == "xlsx":
        table, rejects, skipped = _read_xlsx(data, source, file)
        encoding = "utf-8"
    else:
        buf, encoding = _to_utf8(data, source.encoding, file)
        if source.format == "csv":
            table, rejects, skipped = _read_csv(buf, source, file)
        else:
            table, rejects, skipped = _read_json(buf.decode("utf-8"), source, file)
    rows_in = table.num_rows + len(set(rejects.column("_row").to_pylist()))
    return RawRead(table, rejects, encoding, rows_in, skipped)


def map_columns(raw: pa.Table, contract: Contract, *, file: str | None = None) -> pa.Table:
    """Select and rename source columns to the contract's field names.

    A field matches the first of its :meth:`govdx.ContractField.source_candidates` found
    (``source_column``, else ``title``, else ``name``), comparing names after stripping
    whitespace, NBSP, U+3000 and BOM and NFC normalisation.

    Args:
        raw: ``pyarrow.Table[rows × (source columns..., _row)]`` from :func:`read_source`.
        contract: the dataset contract.
        file: the source file, for messages.

    Returns:
        ``pyarrow.Table[rows × (fields in contract order..., _row int64)]``; a missing optional
        field is an all-null ``pa.string()`` column.

    Raises:
        MissingColumnError: a required field has no source column; names the file, the field,
            its candidates and the columns found.
    """
    by_name = {_clean_name(n): i for i, n in reversed(list(enumerate(raw.column_names)))}
    found = [n for n in raw.column_names if n != "_row"]
    arrays, names = [], []
    for f in contract.fields:
        cands = f.source_candidates()
        hit = next((by_name[c] for c in map(_clean_name, cands) if c in by_name), None)
        if hit is None or raw.column_names[hit] == "_row":
            if f.required:
                raise MissingColumnError(file=file, field=f.name, candidates=cands, found=found)
            arrays.append(pa.nulls(raw.num_rows, pa.string()))
        else:
            arrays.append(raw.column(hit))
        names.append(f.name)
    if "_row" in raw.column_names:
        arrays.append(raw.column("_row"))
    else:
        arrays.append(pa.array(np.arange(1, raw.num_rows + 1, dtype=np.int64)))
    names.append("_row")
    return pa.Table.from_arrays(arrays, names=names)
