"""A Toxiproxy-compatible TCP fault proxy in asyncio, loopback only (FAILURES F8, F13).

Put it between EDC terminals and the switch to make a link slow, choppy, cut or dead.
It speaks Toxiproxy's model and HTTP API (docs/FAULTPROXY.md), so scripts written for
it keep working against a real Toxiproxy.

In process (tests, the chaos harness), in a running asyncio loop::

    from loadtest.faultproxy import FaultProxy

    async with FaultProxy(seed=1) as fp:
        edc = await fp.create_proxy("edc", upstream="127.0.0.1:8583")  # listen 127.0.0.1:0
        print(edc.listen)                                  # "127.0.0.1:41234": EDCs go here
        await fp.add_toxic("edc", "latency", attributes={"latency": 300})    # downstream
        await fp.add_toxic("edc", "timeout", stream="downstream", name="drop",
                           attributes={"timeout": 0})      # responses lost (F13)
        await fp.remove_toxic("edc", "drop")               # closes the connections it held
        await fp.update_proxy("edc", enabled=False)        # down: connections closed
        await fp.reset()                                   # all enabled, no toxics

From blocking code: ``ThreadedFaultProxy`` runs one (with its HTTP API) in a thread::

    from loadtest.faultproxy import ThreadedFaultProxy

    with ThreadedFaultProxy() as fp:                       # API on 127.0.0.1:<any>
        proxy = fp.client().create(upstream="127.0.0.1:8583", name="edc")
        proxy.add_toxic("reset_peer", stream="upstream", attributes={"timeout": 100})
        proxy.destroy_toxic("reset_peer_upstream")

Against a separate server (``python -m loadtest.faultproxy`` or a real Toxiproxy)::

    from loadtest.faultproxy import ToxiproxyClient

    client = ToxiproxyClient("127.0.0.1", 8474)
    client.populate([{"name": "edc", "listen": "127.0.0.1:18583",
                      "upstream": "127.0.0.1:8583"}])
    client.get_proxy("edc").add_toxic("bandwidth", attributes={"rate": 1})
    client.reset()

Toxics (``stream`` upstream = client -> server, downstream = server -> client, default
downstream; ``toxicity`` 0..1 = the chance a connection gets it): ``latency`` (latency,
jitter ms), ``bandwidth`` (rate KB/s), ``slow_close`` (delay ms), ``timeout`` (timeout
ms, 0 = blackhole), ``reset_peer`` (timeout ms, then RST), ``slicer`` (average_size,
size_variation bytes, delay µs), ``limit_data`` (bytes).  Errors raise
:class:`ApiError` subclasses with Toxiproxy's messages and HTTP status codes.
"""

from loadtest.faultproxy.background import ThreadedFaultProxy
from loadtest.faultproxy.client import ClientProxy, ToxiproxyClient
from loadtest.faultproxy.errors import AlreadyExists, ApiError, BadRequest, NotFound
from loadtest.faultproxy.proxy import Proxy
from loadtest.faultproxy.service import FaultProxy, PopulateError
from loadtest.faultproxy.toxics import Toxic

__all__ = [
    "AlreadyExists", "ApiError", "BadRequest", "ClientProxy", "FaultProxy", "NotFound",
    "PopulateError", "Proxy", "ThreadedFaultProxy", "Toxic", "ToxiproxyClient",
]
