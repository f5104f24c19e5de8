"""The compiled build is used only while it matches every source (switch/native.py)."""

from __future__ import annotations

import os
import sys

import pytest

from switch import native


def _manifest() -> dict[str, object]:
    """A manifest as the build writes it, for the sources on disk now."""
    return {"abi": native.abi_tag(), "modules": list(native.MODULES),
            "sources": native.package_sources()}


def test_one_source_edited_since_the_build_means_pure_python() -> None:
    manifest = _manifest()
    sources = manifest["sources"]
    assert isinstance(sources, dict)
    sources["switch/core/decide.py"] = "0" * 64
    assert native._built_files(manifest) == (
        "switch/core/decide.py changed since the build (make native)")


def test_a_source_added_or_removed_since_the_build_means_pure_python() -> None:
    added = _manifest()
    sources = added["sources"]
    assert isinstance(sources, dict)
    del sources["switch/host/service.py"]  # on disk now, not at build time
    assert native._built_files(added) == (
        "switch/host/service.py changed since the build (make native)")
    removed = _manifest()
    sources = removed["sources"]
    assert isinstance(sources, dict)
    sources["switch/gone.py"] = "0" * 64
    assert native._built_files(removed) == "switch/gone.py changed since the build (make native)"


def test_another_python_or_module_list_means_pure_python() -> None:
    other_abi = {**_manifest(), "abi": ".cpython-312-x86_64-linux-gnu.so"}
    assert str(native._built_files(other_abi)).startswith("built for .cpython-312")
    other_list = {**_manifest(), "modules": list(native.MODULES[:-1])}
    assert native._built_files(other_list) == "built from another module list (make native)"


def test_bpnt_native_0_means_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPNT_NATIVE", "0")
    assert native.check() == "BPNT_NATIVE=0"


def test_what_this_process_runs_is_what_it_loaded() -> None:
    """Native: every compiled module came from build/native; pure: none did.  In CI the
    suite must run on the compiled build (make test builds it first)."""
    loaded = {name: getattr(sys.modules.get(name), "__file__", None) or ""
              for name in native.MODULES}
    from_build = {name for name, file in loaded.items()
                  if file.startswith(str(native.BUILD_DIR))}
    if native.state == "native":
        __import__("switch.core.decide")
        assert sys.modules["switch.core.decide"].__file__.endswith(native.abi_tag())
        assert from_build == {name for name, file in loaded.items() if file}
    else:
        assert not from_build
    if os.environ.get("CI") == "true" and os.environ.get("BPNT_NATIVE") != "0":
        assert native.state == "native", native.state
