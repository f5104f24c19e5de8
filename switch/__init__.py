"""BPNT transaction switch: ISO 8583 host for e-warong EDC terminals."""
