"""The hypercorn settings both listeners share (the kiosk's and the LAN admin one)."""

from __future__ import annotations

import logging

from hypercorn.config import Config as HyperConfig

__all__ = ["LISTEN_BACKLOG", "hyper_config"]

# Connections the kernel completes before we accept them. hypercorn's default of 100 overflowed
# under a burst (1,000 parallel logins: 4 in 10 cut with a reset, `bench faults`); a kiosk page
# reloaded on many phones at once, or every client reconnecting after a restart, is the same
# burst. The kernel caps it at net.core.somaxconn (4096 on Debian).
LISTEN_BACKLOG = 1024


def hyper_config(bind: str) -> HyperConfig:
    """A hypercorn config listening on `bind` ("host:port"; an IPv6 host in brackets)."""
    hc = HyperConfig()
    hc.bind = [bind]
    hc.backlog = LISTEN_BACKLOG
    hc.accesslog = None
    hc.errorlog = logging.getLogger("appliance.http")
    hc.graceful_timeout = 3.0
    return hc
