"""The browser tests' helpers over :mod:`console.browser`: whether Chromium is there
(in CI it must be), and submitting a form by hand."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from console.browser import CHROMIUM, chromium, log_in, serving

__all__ = ["CHROMIUM", "SUBMIT_FORM", "chromium", "log_in", "require_chromium", "serving"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chromium() -> None:
    """Skip without Chromium and Playwright, except in CI, where that is a failure."""
    problem = None
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        problem = f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright (python) is not installed"
    if problem:
        if in_ci():
            pytest.fail(f"{problem} (CI=true: the browser tests are required)")
        pytest.skip(problem)


#: Submits a form like the page's own would (a hidden form with the session's CSRF
#: token), whatever the nav shows: the server must refuse regardless of the UI.
SUBMIT_FORM = """([action, fields]) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = action;
  for (const [name, value] of Object.entries(fields)) {
    const input = document.createElement('input');
    input.type = 'hidden'; input.name = name; input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}"""
