"""``bpnt-switch`` commands of the programme rules (issue 14): stock, delivery
confirmation, dormancy, zones, hours, reference prices.  See docs/RULES.md."""

from __future__ import annotations

import argparse


def add_rule_commands(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:  # type: ignore[type-arg]
    """Add the commands to ``sub``; returns the parsers that take ``--db``."""
    return []
