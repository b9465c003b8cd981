"""Reading an annotation sheet (xlsx via openpyxl, xls via xlrd) into rows keyed by manifest field.

The header row is found, not assumed: SAMM's sheet has about 13 rows of notes before it. A header row is
the first row (within ``scan_rows``) whose cells contain every required header name; names are matched
ignoring case and repeated or surrounding spaces, and blank header cells (CASME II has two) are skipped.
Failures (missing file, not a workbook, no such sheet, no header row) raise ``ManifestError`` naming the
dataset, the file and the sheet, never an exception from inside the spreadsheet library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkit.data.manifest import ManifestError, ManifestProblem


@dataclass(frozen=True)
class SheetRow:
    """One data row: its 1-based row number in the sheet and the raw cell value of each manifest field."""

    number: int
    values: dict[str, Any]


def normalise_header(value: Any) -> str:
    """``'  Estimated  Emotion '`` -> ``'estimated emotion'``; blank cells -> ``''``."""
    return " ".join(str(value).split()).lower() if value is not None else ""


def _error(dataset: str, message: str) -> ManifestError:
    return ManifestError([ManifestProblem(dataset, None, None, message)])


def _read_rows(path: Path, sheet: int | str, dataset: str) -> tuple[str, list[tuple[Any, ...]]]:
    """(sheet name, every row as a tuple of cell values) of one sheet."""
    if not path.is_file():
        raise _error(dataset, f"annotation file not found: {path}")
    if path.suffix.lower() == ".xls":
        return _read_rows_xls(path, sheet, dataset)
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except PermissionError:
        raise  # build_manifest names the file this user may not read
    except Exception as error:  # zipfile.BadZipFile, InvalidFileException, KeyError for a broken archive
        raise _error(dataset, f"cannot open {path} as an xlsx workbook: {type(error).__name__}: {error}") from None
    try:
        names = book.sheetnames
        name = _pick_sheet(names, sheet, path, dataset)
        rows = [tuple(row) for row in book[name].iter_rows(values_only=True)]
    finally:
        book.close()
    return name, rows


def _read_rows_xls(path: Path, sheet: int | str, dataset: str) -> tuple[str, list[tuple[Any, ...]]]:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path))
    except PermissionError:
        raise  # build_manifest names the file this user may not read
    except Exception as error:
        raise _error(dataset, f"cannot open {path} as an xls workbook: {type(error).__name__}: {error}") from None
    name = _pick_sheet(book.sheet_names(), sheet, path, dataset)
    table = book.sheet_by_name(name)
    rows = []
    for r in range(table.nrows):
        cells = []
        for cell in table.row(r):
            value = cell.value
            if cell.ctype == xlrd.XL_CELL_EMPTY or value == "":
                value = None
            elif cell.ctype == xlrd.XL_CELL_NUMBER and float(value).is_integer():
                value = int(value)  # xlrd gives every number as float; the sheets hold integers
            cells.append(value)
        rows.append(tuple(cells))
    return name, rows


def _pick_sheet(names: list[str], sheet: int | str, path: Path, dataset: str) -> str:
    if isinstance(sheet, int):
        if not 0 <= sheet < len(names):
            raise _error(dataset, f"{path} has {len(names)} sheet(s) {names}; sheet index {sheet} does not exist")
        return names[sheet]
    if sheet not in names:
        raise _error(dataset, f"sheet {sheet!r} not found in {path}; its sheets are {names}")
    return sheet


def read_sheet(
    path: str | Path,
    *,
    dataset: str,
    sheet: int | str,
    columns: Mapping[str, str],
    optional_columns: Mapping[str, str] | None = None,
    scan_rows: int = 30,
) -> tuple[str, list[SheetRow]]:
    """Read the data rows of one sheet as ``{field: raw value}`` for the fields of ``columns``.

    ``columns`` maps manifest field -> header name (all required); ``optional_columns`` the same for headers a
    sheet version may lack (then the field is absent from the rows). Fully blank rows are skipped.
    Returns (sheet name, rows).
    """
    path = Path(path)
    name, rows = _read_rows(path, sheet, dataset)
    optional_columns = dict(optional_columns or {})
    wanted = {field: normalise_header(header) for field, header in columns.items()}
    header_index = None
    for index, row in enumerate(rows[:scan_rows]):
        present = {normalise_header(cell) for cell in row}
        if set(wanted.values()) <= present:
            header_index = index
            break
    if header_index is None:
        first = [normalise_header(c) for c in rows[0] if c is not None] if rows else []
        raise _error(
            dataset,
            f"no header row with {list(columns.values())} in the first {scan_rows} rows of sheet {name!r} of "
            f"{path} (wrong sheet or file?); its first row reads {first}",
        )
    header = [normalise_header(cell) for cell in rows[header_index]]
    positions: dict[str, int] = {}
    for field, text in {**wanted, **{f: normalise_header(h) for f, h in optional_columns.items()}}.items():
        if text in header:
            positions[field] = header.index(text)
    out: list[SheetRow] = []
    for offset, row in enumerate(rows[header_index + 1 :], start=header_index + 2):
        if all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in row):
            continue
        values = {field: (row[position] if position < len(row) else None) for field, position in positions.items()}
        out.append(SheetRow(offset, values))
    return name, out
