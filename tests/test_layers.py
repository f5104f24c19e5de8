"""The layers hold (issue 12): checked on the source, so a change that breaks one fails here.

* the decision core (``switch/core``, and the pure ``switch.ledger.money`` and
  ``switch.audit.chain`` it stands on) imports no database driver, no asyncio and
  no transport, directly or through any ``switch`` module it imports, and loads
  none of them when imported;
* no import cycle in ``switch/``, between modules or between its packages (every
  import counts, also inside a function or under ``TYPE_CHECKING``);
* only the money module (``switch/ledger/``) writes a balance or opens an account;
* the terminal simulator needs nothing of the host (``switch.host``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWITCH = ROOT / "switch"
CORE_ROOTS = ("switch.core", "switch.ledger.money", "switch.audit.chain")
FORBIDDEN_IN_CORE = ("sqlalchemy", "psycopg", "asyncio", "alembic", "switch.transports",
                     "switch.db", "switch.host", "switch.server")
#: A balance written (SQL or ORM), an account opened, or a held balance moved.
BALANCE_WRITE = re.compile(
    r"SET\s+balance_sen|values\(\s*balance_sen|balance_sen\s*=\s*(accounts|Account)\.balance_sen"
    r"|INSERT INTO accounts|COPY accounts|insert\(Account\)|Account\(kind"
    r"|\.balance_sen\s*=[^=]|balance_sen\s*[-+]=|balances\[[^]]+\]\s*[-+]?=\s*left|"
    r"balances\[[^]]+\]\s*[-+]=")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in SWITCH.rglob("*.py")
            if "migrations" not in path.parts}


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, anywhere in it (``from a import b``: ``a.b`` when
    that is a module, else ``a``)."""
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in _modules() else base


@cache
def _graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(_imports(path)) for name, path in _modules().items()}


def _internal(name: str) -> str | None:
    """The ``switch`` module an import names (a package's ``__init__`` included)."""
    while name and name not in _modules():
        name = name.rpartition(".")[0]
    return name or None


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in map(_internal, _graph().get(name, ())) if m]
    return seen


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a path that comes back to its start), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, imported in _graph().items():
        targets = {m for m in map(_internal, imported) if m and m != name}
        # a package's __init__ importing its own modules is how packages work, not a cycle
        graph[name] = {t for t in targets if not name.startswith(f"{t}.")}
    return graph


def _package(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def test_the_decision_core_imports_no_driver_loop_or_transport() -> None:
    core = {name for name in _modules() if name.startswith(CORE_ROOTS)}
    assert "switch.core.decide" in core and "switch.core.card" in core
    offenders = {}
    for root in sorted(core):
        for name in sorted(_reachable(root)):
            bad = [i for i in _graph()[name]
                   if i.startswith(FORBIDDEN_IN_CORE) or _internal(i) in {"switch.server"}]
            if name.startswith(FORBIDDEN_IN_CORE) or bad:
                offenders[f"{root} -> {name}"] = bad or [name]
    assert not offenders, offenders


def test_importing_the_core_loads_no_driver_or_event_loop() -> None:
    code = ("import sys, switch.core.decide, switch.core.precheck\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'psycopg', 'asyncio', 'alembic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]", out


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_module_graph()) is None


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for name, targets in _module_graph().items():
        graph.setdefault(_package(name), set()).update(
            _package(t) for t in targets if _package(t) != _package(name))
    assert _cycle(graph) is None


@pytest.mark.parametrize("path", sorted(p for p in SWITCH.rglob("*.py")
                                        if "migrations" not in p.parts),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_ledger_writes_a_balance(path: Path) -> None:
    hits = [line.strip() for line in path.read_text().splitlines() if BALANCE_WRITE.search(line)]
    if path.parent.name == "ledger":
        return
    assert not hits, hits


def test_the_ledger_does_write_balances() -> None:
    """The pattern above finds what it is for (else the test before it proves nothing)."""
    found = {path.name for path in (SWITCH / "ledger").glob("*.py")
             if BALANCE_WRITE.search(path.read_text())}
    assert {"postings.py", "accounts.py", "money.py"} <= found, found


def test_the_terminal_simulator_needs_nothing_of_the_host() -> None:
    offenders = {}
    for path in (ROOT / "terminal_sim").rglob("*.py"):
        names = [n for n in _imports(path) if n.startswith("switch.host")]
        if names:
            offenders[str(path.relative_to(ROOT))] = names
    assert not offenders, offenders


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
