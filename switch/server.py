"""``bpnt-switch serve``: the long-running switch (asyncio, TCP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from switch.clock import Clock
from switch.host.runner import AsyncHost
from switch.host.service import HostService
from switch.ledger.database import open_database
from switch.settings import Settings
from switch.transports.tcp import TcpTransport

log = logging.getLogger("bpnt.server")


async def serve(settings: Settings, *, clock: Clock | None = None,
                ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); then drain and close."""
    db = open_database(settings.database_url)
    host = AsyncHost(HostService(db, settings, clock))
    transport = TcpTransport(host.handle, settings)
    bound_host, bound_port = await transport.start()
    print(f"bpnt-switch listening on {bound_host}:{bound_port} db={_safe_url(settings)}",
          flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("stopping: closing listener, finishing requests in flight")
    await transport.close()
    host.close()
    db.dispose()


def _safe_url(settings: Settings) -> str:
    """The database URL without a password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)
