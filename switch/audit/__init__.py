"""Tamper-evident audit trail: every administrative change and financial decision,
in an HMAC chain that ``bpnt-switch audit verify`` checks."""
