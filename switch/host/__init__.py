"""The host: one request unit in, one response unit out, one database transaction.

This is where protocol, authorization rules, security and the ledger meet.  It
is synchronous and sans-IO with respect to the network: transports call
:meth:`HostService.process_unit` from the single writer thread.
"""
