"""How `central serve` and the demo run the web app under uvicorn: which peers may set the client
address, and access logs without secrets.

- uvicorn believes `X-Forwarded-For` from the peers in `forwarded_allow_ips`, and by default that
  is 127.0.0.1: behind nothing, any local client (or a proxy that passes the header through) could
  pick its own address and walk around the per-address login limit. We always pass the configured
  `web.trusted_proxies` (default none: the client address is the TCP peer).
- uvicorn's access log prints each URL with its query; Open311 clients put `api_key=` there. Its
  handlers get the same RedactingFilter as ours (streetwatch/redaction.py).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from streetwatch.central.config import WebSettings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging set-up with the redacting filter on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "streetwatch.redaction.RedactingFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config


def proxy_options(web: WebSettings) -> dict[str, Any]:
    """uvicorn's proxy-header options from the settings: trust exactly `web.trusted_proxies`."""
    trusted = list(web.trusted_proxies)
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


def uvicorn_config(app: FastAPI, web: WebSettings, *, log_level: str = "info") -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        app,
        host=web.host,
        port=web.port,
        log_level=log_level,
        log_config=uvicorn_log_config(),
        **proxy_options(web),
    )
