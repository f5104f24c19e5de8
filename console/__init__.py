"""The operations console (issue 16): a web application over the switch's database, run
as its own process (``bpnt-switch console``), never on the switch's hot path."""
