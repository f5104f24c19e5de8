"""The console's own settings (``BPNT_CONSOLE_*``).

The database URL and the keys are the switch's (:func:`switch.settings.load_settings`);
these are only what the web application adds.  ``secret_hex`` signs the session
cookies: the default is a public demo value, and a deployment must set its own.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Public demo value: anyone can forge a session signed with it.  Set
#: BPNT_CONSOLE_SECRET_HEX (32 random bytes, hex) for anything but the demo.
DEMO_SECRET_HEX = "18d346f5bb8867424a6af62051ffa05e842c27553d5c93b854ac19b3627d17d6"


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BPNT_CONSOLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    secret_hex: str = Field(default=DEMO_SECRET_HEX, repr=False, min_length=32)
    #: A session cookie is good for this long after login (then log in again).
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    #: The switches' Prometheus endpoints the live dashboard reads.
    switch_metrics_urls: list[str] = ["http://127.0.0.1:9585/metrics"]
    #: Wrong passwords in a row that lock an account, and for how long.
    max_failed_logins: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    #: Failed logins from one address within the window before it is refused (429).
    address_max_failures: int = Field(default=20, ge=1)
    address_window_s: int = Field(default=300, ge=1)
    #: Rows per page in the paginated lists.
    page_size: int = Field(default=50, ge=5, le=500)
