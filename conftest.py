"""The project's pytest set-up for ``switch/``'s doctests.

A module of the compiled build (switch/native.py) is loaded from ``build/native``, not
from its source file, so pytest cannot collect that file's doctests: they are skipped
while the build is in use, and ``make test`` runs them in its pure-Python pass
(``BPNT_NATIVE=0``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from switch import native

_COMPILED_SOURCES = frozenset(native.source_of(module) for module in native.MODULES)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if native.state == "native" and collection_path in _COMPILED_SOURCES:
        return True
    return None
