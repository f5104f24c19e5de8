"""``bpnt-switch report prices|alerts|undelivered|stock`` (issue 14, docs/RULES.md)."""

from __future__ import annotations

import argparse


def add_rule_reports(reports: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:  # type: ignore[type-arg]
    """Add the reports to ``reports``; returns the parsers that take ``--db``."""
    return []
