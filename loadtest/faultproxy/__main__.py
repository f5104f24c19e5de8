"""``python -m loadtest.faultproxy --api 127.0.0.1:8474 [--config proxies.json]``.

Serves the Toxiproxy-shaped HTTP API on loopback, creates the proxies of ``--config``
(Toxiproxy's populate JSON: a list of ``{name, listen, upstream, enabled}``) and stops by
itself after ``--max-runtime-s`` (or on SIGINT/SIGTERM).  Prints one line once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from loadtest.faultproxy.errors import ApiError
from loadtest.faultproxy.service import DEFAULT_API, FaultProxy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.faultproxy",
                                     description="A Toxiproxy-compatible fault proxy "
                                                 "(loopback only).")
    parser.add_argument("--api", default=DEFAULT_API,
                        help=f"HTTP API address on loopback (default {DEFAULT_API})")
    parser.add_argument("--config", type=Path,
                        help="proxies to create: Toxiproxy's populate JSON")
    parser.add_argument("--max-runtime-s", type=float, default=3600.0,
                        help="stop after this many seconds (default 3600)")
    parser.add_argument("--seed", type=int, help="seed of toxicity, jitter and slicer draws")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.max_runtime_s <= 0:
        parser.error("--max-runtime-s must be > 0")
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        proxies = json.loads(args.config.read_text()) if args.config else []
    except (OSError, ValueError) as exc:
        print(f"faultproxy: cannot read --config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args.api, proxies, args.max_runtime_s, args.seed))
    except ApiError as exc:
        print(f"faultproxy: {exc.message}", file=sys.stderr)
        return 2
    return 0


async def serve(api: str, proxies: list[object], max_runtime_s: float,
                seed: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with FaultProxy(seed=seed) as fault_proxy:
        created = await fault_proxy.populate(proxies)
        address = await fault_proxy.start_api(api)
        listing = ", ".join(f"{p.name} {p.listen}->{p.upstream}" for p in created) or "none"
        print(f"faultproxy: API on http://{address}; proxies: {listing}; "
              f"stops after {max_runtime_s:g} s", flush=True)
        try:
            async with asyncio.timeout(max_runtime_s):
                await stop.wait()
        except TimeoutError:
            print("faultproxy: --max-runtime-s reached, stopping", flush=True)


if __name__ == "__main__":
    sys.exit(main())
