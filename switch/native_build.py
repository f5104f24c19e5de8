"""``python -m switch.native_build``: compile :data:`switch.native.MODULES` with mypyc into
``build/native`` (``make native``); ``--check``: which build this interpreter would use,
and why (see :mod:`switch.native`)."""

from __future__ import annotations

import json
import os
import shutil
import sys

from switch.native import (
    BUILD_DIR,
    GROUP,
    MANIFEST,
    MODULES,
    ROOT,
    abi_tag,
    check,
    package_sources,
    source_of,
)


def build() -> int:
    """Compile :data:`MODULES` into ``build/native`` (mypyc) and write the manifest last,
    so an interrupted build is never used."""
    try:
        from mypyc.build import mypycify
        from setuptools import setup  # type: ignore[import-untyped]
    except ImportError as exc:
        print(f"native build skipped: {exc} (the switch runs as pure Python)")
        return 0
    sources = package_sources()
    # Built beside the current build, then swapped in by renames: a running switch keeps
    # the files it loaded (never rewritten in place), a starting one sees either build.
    fresh = BUILD_DIR.with_name(f"native.new-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    os.chdir(ROOT)
    paths = [str(source_of(module).relative_to(ROOT)) for module in MODULES]
    try:
        setup(name="bpnt-native", script_args=[
                  "--quiet", "build_ext", "--build-lib", str(fresh),
                  "--build-temp", str(fresh / "tmp")],
              ext_modules=mypycify(paths, group_name=GROUP, target_dir=str(fresh / "c")))
    except (SystemExit, Exception) as exc:  # a compiler missing or failing: pure Python
        shutil.rmtree(fresh, ignore_errors=True)
        print(f"native build failed ({exc}); the switch runs as pure Python")
        return 0
    (fresh / MANIFEST.name).write_text(json.dumps(
        {"abi": abi_tag(), "modules": list(MODULES), "sources": sources}, indent=1))
    old = BUILD_DIR.with_name(f"native.old-{os.getpid()}")
    if BUILD_DIR.exists():
        BUILD_DIR.rename(old)
    fresh.rename(BUILD_DIR)
    shutil.rmtree(old, ignore_errors=True)
    print(f"native build: {len(MODULES)} modules in {BUILD_DIR.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        return build()
    if args != ["--check"]:
        print(__doc__)
        return 2
    found = check()
    print("native" if not isinstance(found, str) else f"pure: {found}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
