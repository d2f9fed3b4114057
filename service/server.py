"""How uvicorn runs the app: one ``uvicorn_config`` for ``coldproxy serve`` and the tests, so both get the same
connection-level bounds (``service.connections``: head deadline, head bytes counted as they arrive, connections
capped in all and per client with idle ones evicted first, requests in flight capped with the probes on their own
budget). uvicorn's httptools parser is the fast one (bench/results/design_measurements.md).
"""

from __future__ import annotations

import uvicorn

from coldproxy.config import ServiceSettings
from service.connections import bounded_protocol


def uvicorn_config(app, settings: ServiceSettings, **overrides) -> uvicorn.Config:
    s = settings
    http = bounded_protocol(
        max_header_bytes=s.max_header_bytes,
        max_url_bytes=s.max_url_bytes,
        header_timeout_s=s.header_timeout_s,
        max_connections=s.max_connections,
        max_per_client=s.max_connections_per_client,
        max_probes=s.max_probes_in_flight,
    )
    options = dict(
        host=s.host,
        port=s.port,
        log_level="info",
        access_log=s.access_log,
        timeout_graceful_shutdown=s.shutdown_grace_s,
        http=http,
    )
    return uvicorn.Config(app, **(options | overrides))
