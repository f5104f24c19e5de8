"""The console's live dashboard data (issue 16), free of the web framework.

:mod:`console.live.poller` reads what is new in the switch's database every few
seconds (one poller per console process); :mod:`console.live.window` keeps the
per-minute aggregates of the last hour; :mod:`console.live.switch_metrics` scrapes the
switches' ``/metrics``; :mod:`console.live.spikes` flags failure spikes by region and
e-warong; :mod:`console.live.snapshot` turns it all into the JSON the dashboard's
server-sent events and API carry.
"""
