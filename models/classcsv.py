"""Class tables as CSV: one row per class, its attribute vector in the columns.

Format (what a spreadsheet exports as "CSV UTF-8")::

    name,origin,<attribute 1>,<attribute 2>,...
    zebra,seen,0.0,1.0,...
    okapi,unseen,0.5,0.25,...

* UTF-8; a leading byte-order mark (Excel adds one) is accepted. Comma-separated;
  names containing commas or quotes are quoted the usual CSV way.
* ``name`` (required) and ``origin`` (``seen``, ``unseen`` or ``user`` for classes
  added to a bundle later) may sit in any column; every other column is an attribute.
* Every attribute cell is a finite number. Blank rows are skipped.

Row numbers in error messages are 1-based with the header as row 1, as a spreadsheet
shows them; columns are named and given as spreadsheet letters.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import DataError

__all__ = ["ClassTable", "DECIMAL_COMMA", "ORIGINS", "class_csv_bytes", "column_letter", "read_class_csv",
           "write_class_csv"]

ORIGINS = ("seen", "unseen", "user")


@dataclass(eq=False)
class ClassTable:
    """Classes and their attribute vectors, as read from or written to a class CSV.

    Attributes:
        names: (C,) class names, unique.
        origins: (C,) each "seen", "unseen" or "user"; None when the file has no
            ``origin`` column.
        attribute_names: (d,) attribute (column) names.
        values: (C, d) float32 attribute matrix.
    """

    names: list[str]
    origins: list[str] | None
    attribute_names: list[str]
    values: np.ndarray  # (C, d) float32
    rows: list[int] | None = None  # (C,) spreadsheet row of each class, when read from a file
    columns: list[int] | None = None  # (d,) 0-based file column of each attribute, when read from a file


def column_letter(index: int) -> str:
    """0-based column index -> spreadsheet letters (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _decode(path: Path, raw: bytes) -> str:
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) >= 4 and raw[1:4:2] == b"\0\0" and raw[0]):
        raise DataError(
            f"{path}: the file is UTF-16 encoded (what Excel calls 'Unicode Text'), not CSV. Save it "
            "as 'CSV UTF-8' (in Excel: File > Save As > CSV UTF-8)."
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: row {row} contains bytes that are not UTF-8 (byte {exc.start}: "
            f"{raw[exc.start:exc.start + 1]!r}). Save the file as 'CSV UTF-8' "
            "(in Excel: File > Save As > CSV UTF-8)."
        ) from None


def _semicolon_separated(rows: list[list[str]]) -> bool:
    """Row 1 is one comma-free cell holding ';': a spreadsheet's CSV export in a decimal-comma locale."""
    return bool(rows) and len(rows[0]) == 1 and ";" in rows[0][0]


def _parse_header(path: Path, header: list[str]) -> list[str]:
    cols = [c.strip() for c in header]
    if len(cols) == 1 and ";" in cols[0]:
        raise DataError(
            f"{path}: row 1 is separated by ';' (semicolons), as spreadsheets in some "
            "locales export. Re-save with commas as separators (CSV UTF-8) and '.' as "
            "the decimal point."
        )
    if len(cols) == 1 and "\t" in cols[0]:
        raise DataError(f"{path}: row 1 is tab-separated. Re-save it comma-separated (CSV UTF-8).")
    seen: dict[str, int] = {}
    for j, col in enumerate(cols):
        if not col:
            raise DataError(
                f"{path}: row 1, column {column_letter(j)}: the header cell is blank. "
                "Give every column a name (or delete the empty column)."
            )
        key = col.lower() if col.lower() in ("name", "origin") else col
        if key in seen:
            raise DataError(
                f"{path}: row 1: column name '{col}' appears twice (columns "
                f"{column_letter(seen[key])} and {column_letter(j)}). Rename or remove one."
            )
        seen[key] = j
    return cols


def _check_columns(path: Path, attrs: list[str], expected: list[str], require_origin: bool = True) -> None:
    expected_set, attrs_set = set(expected), set(attrs)
    unknown = [a for a in attrs if a not in expected_set]
    missing = [a for a in expected if a not in attrs_set]
    if not unknown and not missing:
        return
    parts = []
    for a in unknown[:10]:
        close = difflib.get_close_matches(a, expected, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"unknown column '{a}'{hint}")
    if len(unknown) > 10:
        parts.append(f"... and {len(unknown) - 10} more unknown columns")
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        parts.append(f"missing column(s) {shown}{more}")
    raise DataError(
        f"{path}: row 1 (header): " + "; ".join(parts) + ". The columns must be exactly "
        f"name, {'origin' if require_origin else 'optionally origin,'} and the model's {len(expected)} attributes "
        "(any order); "
        "list them with the model's attribute names."
    )


DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*")  # "0,5" from a decimal-comma locale


def _parse_value(path: Path, row: int, col: str, j: int, cell: str) -> float:
    where = f"{path}: row {row}, column '{col}' ({column_letter(j)})"
    text = cell.strip()
    if not text:
        raise DataError(f"{where} is blank. Fill in a number (0 if the attribute is absent).")
    try:
        value = float(text)
    except ValueError:
        hint = " Use '.' as the decimal point." if re.fullmatch(r"[-+]?\d*,\d+", text) else ""
        raise DataError(f"{where}: '{text}' is not a number.{hint}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: '{text}' is not a finite number. Use a finite value.")
    return value


def read_class_csv(
    path: str | os.PathLike,
    attribute_names: list[str] | None = None,
    require_origin: bool = True,
    semicolons: bool = False,
) -> ClassTable:
    """Read and validate a class CSV.

    Args:
        path: The CSV file.
        attribute_names: When given, the attribute columns must be exactly these (in
            any order) and the values come back in this order; otherwise the file's
            column order is kept.
        require_origin: Whether an ``origin`` column is mandatory.
        semicolons: Accept ';'-separated files (a spreadsheet's CSV in decimal-comma locales), where
            '0,5' then means 0.5; otherwise such a file is refused with a message saying how to re-save it.

    Returns:
        The table; ``values`` is (C, d) float32, ``rows``/``columns`` say where each value came from.

    Raises:
        DataError: naming the row (header = row 1), the column and the problem.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. Check the path.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from exc
    text = _decode(path, raw)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: not valid CSV ({exc}). Check quoting.") from exc
    decimal_comma = False
    if semicolons and _semicolon_separated(rows):
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
        decimal_comma = True
    if not rows or not any(c.strip() for c in rows[0]):
        raise DataError(
            f"{path}: the file is empty (or row 1 is blank). Expected a header row "
            "'name,origin,<attribute names...>' followed by one row per class."
        )
    cols = _parse_header(path, rows[0])
    lower = [c.lower() for c in cols]
    if "name" not in lower:
        raise DataError(f"{path}: row 1 (header) has no 'name' column. Add a column 'name' with the class names.")
    name_j = lower.index("name")
    origin_j = lower.index("origin") if "origin" in lower else None
    if origin_j is None and require_origin:
        raise DataError(
            f"{path}: row 1 (header) has no 'origin' column. Add a column 'origin' "
            f"with one of {', '.join(ORIGINS)} per class."
        )
    attr_js = [j for j in range(len(cols)) if j not in (name_j, origin_j)]
    attrs = [cols[j] for j in attr_js]
    if not attrs:
        raise DataError(f"{path}: row 1 (header) has no attribute columns. Add one column per attribute.")
    if attribute_names is not None:
        _check_columns(path, attrs, list(attribute_names), require_origin)

    names: list[str] = []
    origins: list[str] = []
    cells: list[list[str]] = []  # (C, d) raw attribute cells
    row_nums: list[int] = []  # spreadsheet row of each class (blank rows are skipped)
    first_row: dict[str, int] = {}
    for r, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue  # blank line, e.g. a trailing newline
        if len(fields) != len(cols):
            raise DataError(
                f"{path}: row {r} has {len(fields)} fields but the header has {len(cols)} "
                "columns. Check for missing/extra commas or unquoted commas in names."
            )
        name = fields[name_j].strip()
        if not name:
            raise DataError(f"{path}: row {r}, column 'name' ({column_letter(name_j)}) is blank. Give the class a name.")
        if name in first_row:
            raise DataError(
                f"{path}: row {r}: class name '{name}' is already used in row {first_row[name]}. "
                "Class names must be unique; rename or remove one."
            )
        first_row[name] = r
        if origin_j is not None:
            origin = fields[origin_j].strip().lower()
            if origin not in ORIGINS:
                raise DataError(
                    f"{path}: row {r}, column 'origin' ({column_letter(origin_j)}): "
                    f"'{fields[origin_j].strip()}' is not one of {', '.join(ORIGINS)}."
                )
            origins.append(origin)
        names.append(name)
        row_cells = [fields[j] for j in attr_js]
        if decimal_comma:
            row_cells = [c.replace(",", ".") if DECIMAL_COMMA.fullmatch(c) else c for c in row_cells]
        cells.append(row_cells)
        row_nums.append(r)
    if not names:
        raise DataError(f"{path}: the header is there but no class rows follow. Add one row per class.")

    try:  # fast path: numpy parses strings like float() does
        matrix = np.array(cells, dtype=np.float64)  # (C, d) in file column order
    except ValueError:
        matrix = None
    if matrix is None or not np.isfinite(matrix).all():
        for r, row in zip(row_nums, cells):  # slow path, only to name the first bad cell
            for j, cell in zip(attr_js, row):
                _parse_value(path, r, cols[j], j, cell)
        raise DataError(f"{path}: some attribute values could not be read as numbers.")  # not reached
    with np.errstate(over="ignore"):
        matrix32 = matrix.astype(np.float32)
    if not np.isfinite(matrix32).all():
        i, j = np.argwhere(~np.isfinite(matrix32))[0]
        raise DataError(
            f"{path}: row {row_nums[i]}, column '{attrs[j]}': {matrix[i, j]} is too large for "
            "float32. Rescale the attributes."
        )
    columns = list(attr_js)
    if attribute_names is not None:
        position = {a: j for j, a in enumerate(attrs)}
        order = [position[a] for a in attribute_names]
        matrix32, attrs, columns = matrix32[:, order], list(attribute_names), [attr_js[k] for k in order]
    return ClassTable(names, origins if origin_j is not None else None, attrs, np.ascontiguousarray(matrix32),
                      rows=row_nums, columns=columns)


def _shortest(value) -> str:
    """The shortest text that reads back as the same float32 (0.3, not 0.300000012)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def write_class_csv(table: ClassTable, path: str | os.PathLike) -> None:
    """Write ``table`` as a class CSV, atomically (temp file + ``os.replace``).

    Values are written with 9 significant digits, enough to read back every float32
    exactly. An ``origin`` column is written when ``table.origins`` is not None.

    Raises:
        DataError: the table is inconsistent (shapes, duplicate names) or unwritable.
    """
    path = Path(path)
    atomic_write_bytes(path, class_csv_bytes(table, path))


def class_csv_bytes(table: ClassTable, path: str | os.PathLike = "<class table>") -> bytes:
    """The UTF-8 bytes ``write_class_csv`` writes; ``path`` only names the table in error messages."""
    values = np.asarray(table.values)
    n, d = len(table.names), len(table.attribute_names)
    if values.shape != (n, d):
        raise DataError(f"{path}: cannot write: values have shape {values.shape}, expected ({n}, {d}).")
    if table.origins is not None and len(table.origins) != n:
        raise DataError(f"{path}: cannot write: {len(table.origins)} origins for {n} classes.")
    if len(set(table.names)) != n:
        dup = next(x for x in table.names if table.names.count(x) > 1)
        raise DataError(f"{path}: cannot write: class name '{dup}' occurs twice.")
    if not np.isfinite(values).all():
        raise DataError(f"{path}: cannot write: the attribute values contain NaN or inf.")
    header = ["name"] + (["origin"] if table.origins is not None else []) + list(table.attribute_names)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i, name in enumerate(table.names):
        origin = [table.origins[i]] if table.origins is not None else []
        writer.writerow([name, *origin, *(_shortest(v) for v in values[i])])
    return buf.getvalue().encode("utf-8")
