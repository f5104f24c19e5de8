"""BPNT transaction switch: ISO 8583 host for e-warong EDC terminals."""

from switch import native

# The compiled purchase path, when built from exactly these sources (switch/native.py).
native.install()
