"""Read-only reports on the switch's database (``bpnt-switch report ...``).

Each report is one function that reads in one transaction and returns a dataclass,
and render functions that turn it into text; none of them writes.
"""
