"""What an admin command refuses, and the exit code it ends with (docs/RULES.md,
"Commands"): 2 for a usage error or something not found, 1 for a refusal."""

from __future__ import annotations

#: ``bpnt-switch`` exit codes of the admin commands.
EXIT_REFUSED = 1
EXIT_USAGE = 2


class AdminError(ValueError):
    """A user error: printed as ``error: ...``, never a traceback; nothing was written."""

    def __init__(self, message: str, *, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(AdminError):
    """No such e-warong, item, card, KPM or record (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_USAGE)


class InvalidInput(AdminError):
    """A malformed argument or file (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_USAGE)


class Refused(AdminError):
    """A well-formed request the rules do not allow (exit 1)."""
