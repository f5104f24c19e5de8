"""A real switch and the console over one seeded database, with simulated EDCs
(terminal_sim) to drive traffic: the browser test's world and the screenshot's.

The switch is ``bpnt-switch serve`` in its own process on a free loopback port (stopped
by its PID); the console is the real app (uvicorn in a thread) with a poller every
half second; the EDCs are ``terminal_sim``'s, over TCP to the switch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from console.app import create_app
from console.live.poller import Poller
from console.seed import seed_demo_users
from console.settings import ConsoleSettings
from switch.admin.demo import DemoWorld, build_world, seed_database
from switch.clock import SystemClock
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Ewarong, RequestRecord, Terminal
from switch.ledger.postings import allocate_period
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.demo import free_port, start_switch, stop_switch
from terminal_sim.world import SimWorld
from tests.console.live_server import LiveServer

POLL_S = 0.5


@dataclass
class DashboardWorld:
    db: Database
    demo: DemoWorld
    sim: SimWorld
    console_url: str
    #: role -> (username, password)
    logins: dict[str, tuple[str, str]]
    ewarong_mid: str
    poller: Poller

    def approved(self, mid: str | None = None) -> int:
        """Approved card requests in the database (at ``mid``'s terminals)."""
        r = RequestRecord
        query = select(func.count()).select_from(r).where(
            r.kind == "request", r.response_code == "00")
        if mid is not None:
            query = query.where(r.tid.in_(
                select(Terminal.tid).join(Ewarong, Ewarong.id == Terminal.ewarong_id)
                .where(Ewarong.mid == mid)))
        with self.db.read() as connection:
            return int(connection.scalar(query) or 0)


@contextmanager
def dashboard_world(workdir: Path, url: str | None = None, *, kpm: int = 200,
                    switch_env: dict[str, str] | None = None) -> Iterator[DashboardWorld]:
    url = url or f"sqlite:///{workdir / 'dashboard.db'}"
    settings = load_settings(database_url=url)
    keys = Keyring.from_settings(settings)
    db = open_database(url)
    demo = build_world(kpm_count=kpm)
    seed_database(db, keys, demo)
    allocate_period(db, SystemClock().now().strftime("%Y-%m"), settings.period_amount_sen)
    logins = {role: (name, password) for name, role, password
              in seed_demo_users(db, keys, SystemClock())}
    port, metrics_port = free_port(), free_port()
    switch: subprocess.Popen[bytes] = start_switch(
        url, port, workdir / "switch.log",
        {"BPNT_METRICS_PORT": str(metrics_port), **(switch_env or {})})
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    app = create_app(ConsoleSettings(switch_metrics_urls=[metrics_url]), settings)
    poller = Poller(app.state.db, interval_s=POLL_S, metrics_urls=[metrics_url])
    app.state.live_poller = poller
    server = LiveServer(app)
    sim = SimWorld(demo, keys.imk_ac, "127.0.0.1", port, timeout_s=10.0,
                   state_path=workdir / "edc-state.json")
    try:
        server.start()
        with db.read() as connection:
            first_mid = connection.scalar(select(Ewarong.mid).where(
                Ewarong.status == "active").order_by(Ewarong.mid))
        yield DashboardWorld(db, demo, sim, server.url, logins, str(first_mid), poller)
    finally:
        sim.close()
        server.stop()
        stop_switch(switch)
        app.state.db.dispose()
        db.dispose()
