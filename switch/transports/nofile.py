"""File descriptors for ``max_connections`` (issue 17: 10,000 idle terminals).

Every TCP connection the switch holds is one descriptor, so a switch that must hold
``max_connections`` needs its RLIMIT_NOFILE soft limit above that plus what the rest
of the process uses (database connections, the listening and metrics sockets, logs,
the event loop's own).  Shells and service managers often start a process with a soft
limit of 1,024 and a much higher hard limit: :func:`ensure_nofile_limit` raises the
soft limit towards the hard one at start-up, as far as needed, and warns once when
even the hard limit is too low (the connections beyond it would fail at accept with
EMFILE, and the event loop would stop accepting for a while).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("bpnt.tcp")

#: Descriptors the switch uses besides its TCP connections (database pool, listening
#: and metrics sockets, log files, the event loop's epoll and self-pipe, a serial line).
NOFILE_MARGIN = 256

GetLimit = Callable[[int], tuple[int, int]]
SetLimit = Callable[[int, tuple[int, int]], None]


@dataclass(frozen=True)
class NofileLimit:
    """The soft limit before and after, the hard limit, and what was needed."""

    needed: int
    soft_before: int
    soft: int
    hard: int
    #: ``resource.RLIM_INFINITY`` (-1 on Linux): a limit that is no limit.
    infinity: int = -1

    @property
    def enough(self) -> bool:
        return self.soft == self.infinity or self.soft >= self.needed


def ensure_nofile_limit(max_connections: int, *, margin: int = NOFILE_MARGIN,
                        getrlimit: GetLimit | None = None,
                        setrlimit: SetLimit | None = None) -> NofileLimit | None:
    """Raise RLIMIT_NOFILE's soft limit to ``max_connections + margin`` (at most the
    hard limit) when it is below; log one warning when that is still not enough.
    None where the platform has no ``resource`` module (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return None
    get = getrlimit or resource.getrlimit
    put = setrlimit or resource.setrlimit
    infinity = resource.RLIM_INFINITY
    needed = max_connections + margin
    soft, hard = get(resource.RLIMIT_NOFILE)
    new_soft = soft
    if soft != infinity and soft < needed:
        new_soft = needed if hard == infinity else min(hard, needed)
        if new_soft > soft:
            try:
                put(resource.RLIMIT_NOFILE, (new_soft, hard))
            except (ValueError, OSError) as exc:  # e.g. above the kernel's nr_open
                log.warning("could not raise the open-file limit from %d to %d: %s",
                            soft, new_soft, exc)
                new_soft = soft
            else:
                log.info("open-file limit raised from %d to %d (hard limit %s) for "
                         "max_connections=%d", soft, new_soft,
                         "unlimited" if hard == infinity else hard, max_connections)
    result = NofileLimit(needed, soft, new_soft, hard, infinity)
    if not result.enough:
        log.warning(
            "open-file limit %d is below max_connections=%d + %d: connections beyond "
            "about %d will fail at accept (EMFILE); raise the hard limit (ulimit -Hn, "
            "systemd LimitNOFILE=) or lower BPNT_MAX_CONNECTIONS",
            result.soft, max_connections, margin, max(0, result.soft - margin))
    return result
