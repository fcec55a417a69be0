"""The broker's TLS, one rule for the panel (settings.py) and the agent (agent/app.py): plain Python, no Django.

A `rediss://` URL is passed to Celery as it is; its `ssl_*` query (`ssl_cert_reqs`, `ssl_ca_certs`,
`ssl_certfile`, `ssl_keyfile`, `ssl_check_hostname`) is what kombu hands to redis-py. But kombu quietly turns a
`rediss://` URL without `ssl_*` options, or with an `ssl_cert_reqs` it does not know, into TLS that checks no
certificate ("defaulting to insecure SSL behaviour", a warning nobody reads): anyone in the path could then be the
broker. So a `rediss://` URL without options verifies the server against the system's CAs
(`broker_use_ssl`, which an `ssl_*` query replaces), and an unknown `ssl_cert_reqs` is refused, naming it.
A `redis://` URL gets no TLS at all.
"""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

# What kombu understands, spelled as it spells them (anything else: no verification).
CERT_REQS = ("required", "optional", "none", "CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE")


def use_ssl(url: str) -> dict | None:
    """Celery's `broker_use_ssl` for the broker `url`: None unless it is `rediss://`. Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    for value in parse_qs(parts.query).get("ssl_cert_reqs", []):
        if value not in CERT_REQS:
            raise ValueError(f"broker URL: ssl_cert_reqs={value!r} is not one of required, optional, none")
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
