"""Compiled builds of the purchase path's pure modules (issue 17: CPU per purchase).

``make native`` (every ``make`` target that runs the switch depends on it) compiles the
modules of :data:`MODULES` with **mypyc** (part of mypy, from PyPI; it needs a C
compiler and the Python headers) into ``build/native``: the same source, type-checked
and turned into C.  They are used **only while they match their sources**:

* ``build/native/manifest.json`` holds the SHA-256 of **every** ``switch/**/*.py`` and
  the interpreter's ABI tag at build time; :func:`install` (run by
  ``switch/__init__.py``, before any other module of the package is imported) compares
  them with the files on disk (about 1 ms), and puts the compiled modules first on the
  import path only if all match.  Every file, not only the compiled ones: the compiled
  modules are one shared library that calls its own parts directly, and it was
  type-checked against the rest (a changed return type elsewhere would be a
  ``TypeError`` at run time), so one edit anywhere means pure Python until the next
  ``make native``;
* anything else — no build, no C compiler, one source edited since, another Python, or
  ``BPNT_NATIVE=0`` — leaves the package pure Python, which is the same code.

:data:`state` says which one this process runs (``bpnt-switch serve`` logs it).
``make test`` runs the suite on the compiled build (``tests/test_native.py`` fails in CI
if it is not the one loaded), then the core, protocol and security tests and every
doctest again with ``BPNT_NATIVE=0``, so both stay the same program (a compiled module's
doctests run only there: ``conftest.py``).

Left out on purpose: :mod:`switch.protocol.fast_codec` and :mod:`switch.security.pin`.
mypyc checks argument types at run time, and both promise a clean refusal (never a
``TypeError``) for any value a caller hands them (a ``bytearray`` from the serial
line, ``None`` in a hostile test), which their annotations do not spell.

    python -m switch.native_build          # what make native runs
    python -m switch.native_build --check  # which build this interpreter would use, and why
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "native"
MANIFEST = BUILD_DIR / "manifest.json"
#: The shared library's name (mypyc's ``group_name``): ``bpnt_native__mypyc``.
GROUP = "bpnt_native"
#: Compiled: the decision (core), the message model, the 3DES/MAC/EMV helpers, the audit
#: chain's link (what a purchase runs between its decode and its SQL).
MODULES: tuple[str, ...] = (
    *(f"switch.core.{name}" for name in (
        "batch", "card", "decide", "effects", "facts", "gate", "logon", "policy",
        "precheck", "replies", "request", "reversal", "rules", "settlement", "stock",
        "verify")),
    "switch.protocol.bpnt", "switch.protocol.codes", "switch.protocol.message",
    "switch.protocol.routing", "switch.protocol.unit",
    "switch.security.des", "switch.security.emv", "switch.security.mac",
    "switch.audit.chain",
)

#: What this process runs: ``"native"``, or ``"pure: <why>"``.
state = "pure: not checked"


def source_of(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_sources() -> dict[str, str]:
    """The SHA-256 of each ``switch/**/*.py``, by its path from the project root."""
    return {str(path.relative_to(ROOT)): digest(path)
            for path in sorted((ROOT / "switch").rglob("*.py"))}


def abi_tag() -> str:
    return str(importlib.machinery.EXTENSION_SUFFIXES[0])


def _built_files(manifest: dict[str, object]) -> dict[str, Path] | str:
    """The compiled file of each module (and of the group), or why they are not usable."""
    if manifest.get("abi") != abi_tag():
        return f"built for {manifest.get('abi')}, this Python loads {abi_tag()}"
    if manifest.get("modules") != list(MODULES):
        return "built from another module list (make native)"
    sources = manifest.get("sources")
    if not isinstance(sources, dict):
        return f"unreadable {MANIFEST}"
    now = package_sources()
    for name in sorted(set(sources) | set(now)):
        if sources.get(name) != now.get(name):
            return f"{name} changed since the build (make native)"
    suffix = abi_tag()
    files = {module: BUILD_DIR.joinpath(*module.split(".")).with_name(
                 module.rsplit(".", 1)[1] + suffix) for module in MODULES}
    files[f"{GROUP}__mypyc"] = BUILD_DIR / f"{GROUP}__mypyc{suffix}"
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        return f"{missing[0]} is missing"
    return files


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules (and only them) in ``build/native``."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def check() -> dict[str, Path] | str:
    """The compiled files to use, or why this process stays pure Python."""
    if os.environ.get("BPNT_NATIVE", "1") == "0":
        return "BPNT_NATIVE=0"
    try:
        manifest = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return "no build (make native)"
    except (OSError, ValueError) as exc:
        return f"unreadable {MANIFEST}: {exc}"
    if not isinstance(manifest, dict):
        return f"unreadable {MANIFEST}"
    return _built_files(manifest)


def install() -> str:
    """Put the compiled modules first on the import path if they match their sources
    (see the module); :data:`state` afterwards."""
    global state
    if any(isinstance(finder, _NativeFinder) for finder in sys.meta_path):
        return state
    found = check()  # no module of the package is imported yet: switch/__init__.py
    if isinstance(found, str):
        state = f"pure: {found}"
    else:
        sys.meta_path.insert(0, _NativeFinder(found))
        state = "native"
    return state
