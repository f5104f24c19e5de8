"""One settings object for the switch (DESIGN.md: pydantic-settings, ``BPNT_*``).

Defaults run the embedded demo: SQLite under ``./var`` and demo keys.  The demo
keys are public test values: a production deployment must set every ``*_hex``
key from its key ceremony (environment or the TOML file named by
``BPNT_CONFIG``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: Rp 200.000 a month per KPM, in sen (2 implied decimals, HOST_SPEC §2).
DEFAULT_PERIOD_AMOUNT_SEN = 20_000_000


class Settings(BaseSettings):
    """Switch configuration; every field can be set as ``BPNT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="BPNT_", extra="ignore")

    database_url: str = "sqlite:///var/bpnt.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8583, ge=0, le=65535)
    #: Key-encryption key (AES-256) for terminal keys at rest.
    kek_hex: str = Field(
        default="00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF", repr=False
    )
    #: HMAC key that turns a PAN into the token stored in the database.
    pan_token_key_hex: str = Field(default="5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A", repr=False)
    #: PIN verification key (double-length 3DES) for IBM 3624 offsets.
    pvk_hex: str = Field(default="0123456789ABCDEFFEDCBA9876543210", repr=False)
    #: Issuer master key for application cryptograms (EMV option A).
    imk_ac_hex: str = Field(default="0123456789ABCDEF0123456789ABCDEF", repr=False)
    #: HMAC key of the audit chain (``bpnt-switch audit verify``).
    audit_key_hex: str = Field(default="A0D17A0D17A0D17A0D17A0D17A0D17A0", repr=False)
    period_amount_sen: int = Field(default=DEFAULT_PERIOD_AMOUNT_SEN, gt=0)
    max_frame_bytes: int = 2048
    idle_timeout_s: float = 120.0
    partial_frame_timeout_s: float = 10.0
    max_connections: int = 4096
    #: Per source address: one e-warong's NAT should never starve the others.
    max_connections_per_address: int = 1024
    max_pin_tries: int = 3
    #: HOST_SPEC §4: idempotency records are kept at least this long, and a repeat is
    #: matched only against records received within it (``bpnt-switch records prune``
    #: removes older ones).  At most 180 days: a record's key date is DE 13 in the year
    #: nearest the switch's clock, which is unambiguous only within half a year.
    idempotency_window_days: int = Field(default=7, ge=1, le=180)
    #: Prometheus ``/metrics`` (issue 16, docs/METRICS.md) on its own port; ``0`` turns
    #: it off.  Every switch process on one machine needs a port of its own.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9585, ge=0, le=65535)
    #: Transports (HOST_SPEC §1): TCP is on by default; MQTT and serial when configured.
    tcp_enabled: bool = True
    #: ``mqtt://HOST:PORT`` of the broker (Mosquitto), or unset for no MQTT.
    mqtt_url: str | None = None
    mqtt_keepalive_s: int = Field(default=30, ge=1)
    mqtt_reconnect_min_s: float = Field(default=0.2, gt=0)
    mqtt_reconnect_max_s: float = Field(default=5.0, gt=0)
    #: Requests being answered at once per switch process (a bound, TIGER_STYLE).
    mqtt_max_inflight: int = Field(default=64, ge=1)
    #: A device (``/dev/ttyUSB0``, a pty) or pyserial URL (``loop://``), or unset.
    serial_port: str | None = None
    serial_baud: int = Field(default=9600, gt=0)
    #: Group commit (issue 3): at most this many requests share one database
    #: transaction (and one fsync); 1 turns group commit off.
    group_commit_max_batch: int = Field(default=64, ge=1, le=1000)
    #: How long the first request of a batch waits for company when the writer is
    #: idle (0: never wait; under load batches fill while the previous one commits).
    group_commit_max_delay_ms: float = Field(default=1.0, ge=0, le=50)
    #: Run each batch's MAC/PIN/ARQC checks before taking the writer lock (on a read
    #: of their own), so that switch processes sharing one database overlap their
    #: cryptography.  Measured with two processes on PostgreSQL (docs/BENCHMARKS.md):
    #: no more throughput, and more latency at 1,000/s (the extra read); so off.
    group_commit_precheck: bool = False
    #: How long a transport thread waits for the host's answer to one unit.
    handler_timeout_s: float = Field(default=30.0, gt=0)
    #: ``serve``'s event loop: ``uvloop`` (libuv; less CPU per request, so more left
    #: for the ledger writer under the GIL) or the standard library's ``asyncio``.
    #: Without uvloop installed, ``serve`` says so and uses ``asyncio``.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # -- programme rules (issue 14, docs/RULES.md) -----------------------------------
    #: A card unused this many days is dormant (FAILURES F5, RC 62).
    dormancy_days: int = Field(default=90, ge=1, le=3650)
    #: More than ``velocity_max_cards`` distinct cards at one terminal within
    #: ``velocity_window_minutes`` (FAILURES F9): ``decline`` (RC 65), ``flag`` (an
    #: alert only) or ``off``.
    velocity: Literal["decline", "flag", "off"] = "flag"
    velocity_max_cards: int = Field(default=20, ge=1, le=10_000)
    velocity_window_minutes: int = Field(default=10, ge=1, le=1440)
    #: A card transaction outside the e-warong's opening hours (F9).
    off_hours: Literal["decline", "flag", "off"] = "flag"
    #: A purchase by a KPM outside the e-warong's zones (F11): ``strict`` declines
    #: (RC 58), ``off`` allows it and records an alert for the reports.
    zoning: Literal["strict", "off"] = "off"
    #: A basket line's unit price more than ``price_cap_percent`` above the reference
    #: price (F11): ``on`` declines (RC 13); either way the line is in the price report.
    price_cap: Literal["on", "off"] = "off"
    price_cap_percent: int = Field(default=10, ge=0, le=1000)
    #: E-warong stock (F15): ``on`` declines a basket the shelf cannot cover (RC ST) and
    #: moves stock with every purchase, void and reversal.
    inventory: Literal["on", "off"] = "on"
    #: A sale that leaves fewer units than this raises a ``low_stock`` alert (unless the
    #: stock row sets its own threshold).
    low_stock_units: int = Field(default=10, ge=0)
    #: A debit without a goods hand-over confirmation this many hours old is listed by
    #: ``bpnt-switch report undelivered`` (F10).
    delivery_hours: int = Field(default=24, ge=1, le=24 * 90)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("BPNT_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from init arguments, then ``BPNT_*`` variables, then the TOML file."""
    return Settings(**overrides)
