"""The host: request units in, response units out, a batch at a time in one database
transaction (docs/ARCHITECTURE.md).

:mod:`.service` prepares a batch and runs it through the pure deciders of
:mod:`switch.core`, :mod:`.store` reads its facts and writes its effects (one
round trip each on PostgreSQL), :mod:`.runner` drives both stages from asyncio on
two threads.
"""
