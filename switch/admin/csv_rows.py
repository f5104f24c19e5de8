"""The CSV files of the all-or-nothing imports (``stock import``, ``rules
prices-import``): a header row naming the columns, then one row per line; every bad
line is reported with its line number and reason, and then nothing is imported."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from switch.admin.errors import AdminError, InvalidInput


@dataclass(frozen=True)
class CsvRow:
    #: The row's line in the file (the header is line 1).
    line: int
    values: dict[str, str]


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


class CsvRejected(AdminError):
    """Bad lines in an import file: nothing was imported (exit 1)."""

    def __init__(self, path: Path, bad_lines: Sequence[BadLine]) -> None:
        self.bad_lines = tuple(bad_lines)
        listed = "\n".join(f"  line {bad.line}: {bad.reason}" for bad in self.bad_lines)
        super().__init__(f"{path}: {len(self.bad_lines)} bad line(s), nothing imported:\n"
                         f"{listed}")


def read_rows(path: Path, columns: Sequence[str]) -> list[CsvRow]:
    """The rows of ``path``, whose header must name ``columns`` (extra ones ignored)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in columns if name not in header]
            if missing:
                raise InvalidInput(f"{path}: the header must name {','.join(columns)} "
                                   f"(missing: {','.join(missing)})")
            reader.fieldnames = header
            rows = []
            for values in reader:
                if not any((value or "").strip() for value in values.values()
                           if isinstance(value, str)):
                    continue  # a blank line
                rows.append(CsvRow(reader.line_num, {
                    name: (values.get(name) or "").strip() for name in columns}))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    return rows


def positive_int(text: str) -> int | None:
    """``text`` as a positive integer (digits only), or ``None``."""
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value > 0 else None
