"""How ``bpnt-switch`` commands print (issue 16): tables as tables, ``--json`` for
scripts, progress on long work.

- :func:`print_table`: a rich table when stdout is a terminal; plain text in aligned
  columns when it is not (a pipe, a file, a cron job's mail), so ``grep`` and ``awk``
  read it.
- :func:`print_json`: one JSON document on stdout (dates ISO 8601, dataclasses as
  objects, money stays integer sen).  A command given ``--json`` prints that document
  and nothing else on stdout.
- :func:`progress`: a progress bar on stderr, only when stderr is a terminal and the
  command is not in ``--json`` mode; otherwise it does nothing.  Never on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["Advance", "add_json_flag", "emit", "json_mode", "plain_table", "print_json",
           "print_table", "progress", "to_jsonable"]

#: ``advance(done, total)``: the work done so far out of ``total`` (``total`` may change,
#: e.g. once a file's rows are counted; 0: unknown).
Advance = Callable[[int, int], None]

Cell = str | int | None


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (for scripts) instead of text")


def json_mode(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, document: Any, text: str) -> None:
    """A command's result: ``document`` as JSON with ``--json``, else ``text`` (a line
    or lines)."""
    if json_mode(args):
        print_json(document)
    else:
        print(text)


def to_jsonable(value: Any) -> Any:
    """``value`` with dataclasses, dates, paths and tuples made JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        raise TypeError("bytes are never printed (keys, PIN blocks)")
    return value


def print_json(document: Any, *, file: IO[str] | None = None) -> None:
    out = file or sys.stdout
    out.write(json.dumps(to_jsonable(document), ensure_ascii=False, indent=2) + "\n")


def _text(cell: Cell) -> str:
    return "" if cell is None else str(cell)


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """The table as plain text: a header line, then a line per row, in columns two
    spaces apart; numbers right-aligned.  No rule or border: ``awk '{print $2}'``
    reads it."""
    texts = [[_text(c) for c in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in texts)])
              for i, name in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(row[i], int) or row[i] is None for row in rows)
               for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out = [line(list(columns))] + [line(row) for row in texts]
    return "\n".join(out) + "\n"


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], *,
                title: str | None = None, empty: str | None = None,
                file: IO[str] | None = None) -> None:
    """``rows`` under ``columns``: rich on a terminal, :func:`plain_table` otherwise;
    ``empty`` (if given) instead of a table without rows."""
    out = file or sys.stdout
    if not rows and empty is not None:
        if title:
            out.write(f"{title}\n")
        out.write(f"{empty}\n")
        return
    if not out.isatty():
        if title:
            out.write(f"{title}\n")
        out.write(plain_table(columns, rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], int) or r[i] is None for r in rows)
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_text(c) for c in row))
    Console(file=out).print(table)


class _Quiet:
    def __call__(self, done: int, total: int) -> None:
        return None


@contextmanager
def progress(description: str, *, enabled: bool = True,
             file: IO[str] | None = None) -> Iterator[Advance]:
    """An :data:`Advance` drawing a bar on stderr (or ``file``) when it is a terminal and
    ``enabled`` (pass ``not json_mode(args)``); a no-op otherwise."""
    out = file or sys.stderr
    if not enabled or not out.isatty():
        yield _Quiet()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=out), transient=False) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield advance
