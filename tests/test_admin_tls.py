"""The LAN admin listener speaks TLS (a self-signed certificate made on first run, fingerprint in
the journal and on the status page) or refuses to start, unless plain HTTP is allowed; /admin on
an exposed kiosk listener is for the box itself only.

The real service on loopback (and on this sandbox's non-loopback address where it has one),
real HTTPS with the standard library's TLS client.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import start_from_file

from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.supervisor import Service

PASSWORD = "correct horse battery"
LAN_ADDR = "192.0.2.2"

Start = Callable[..., Awaitable[tuple[Service, Path]]]


def _has_addr(addr: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
    except OSError:
        return False
    return True


@pytest.fixture
def start(nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM) -> Start:
    async def _start(**sections: dict[str, Any]) -> tuple[Service, Path]:
        return await start_from_file(nursery, tmp_path / "state", llm.url, **sections)

    return _start


def served_fingerprint(url: str) -> str:
    """SHA-256 of the certificate the server presents (no verification: we compare it)."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host.strip("[]"), int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


async def test_admin_listener_makes_a_self_signed_certificate_once(
    start: Start, caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.admin")
    svc, path = await start(admin={"host": "127.0.0.1", "port": 0})
    admin_urls = [u for u in svc.urls[1:] if u.startswith("https://")]
    assert len(admin_urls) == 1 and len(svc.urls) == 2, svc.urls
    cert, key = path.parent / "admin-tls.crt", path.parent / "admin-tls.key"
    assert cert.is_file() and key.is_file()
    assert key.stat().st_mode & 0o077 == 0  # the private key is the service's alone
    logged = re.findall(r"SHA-256 fingerprint ([0-9A-F:]{95})", caplog.text)
    assert len(logged) == 1
    served = await trio.to_thread.run_sync(served_fingerprint, admin_urls[0])
    assert served == logged[0]
    # A browser that trusts this certificate talks to the admin page; the status page shows
    # the same fingerprint.
    verify = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(base_url=admin_urls[0], verify=verify, timeout=10) as c:
        r = await c.post("/admin/api/setup", json={"password": PASSWORD})
        assert r.status_code == 200, r.text
        assert "Secure" in r.headers["set-cookie"]
        status = (await c.get("/admin/api/status")).json()
    assert status["admin_tls"]["fingerprint"] == served
    assert status["admin_tls"]["self_signed"] is True
    assert status["admin_tls"]["url"] == admin_urls[0]
    # The next start reuses it (the fingerprint staff checked stays valid).
    svc.stop()
    caplog.clear()
    svc2, _ = await start(admin={"host": "127.0.0.1", "port": 0})
    url2 = next(u for u in svc2.urls if u.startswith("https://"))
    assert await trio.to_thread.run_sync(served_fingerprint, url2) == served


async def test_without_tls_the_admin_listener_refuses_to_start(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="appliance.admin")
    svc, path = await start(admin={"host": "127.0.0.1", "port": 0, "tls_self_signed": False})
    assert len(svc.urls) == 1  # only the kiosk listener
    assert "admin listener on 127.0.0.1:0 NOT started" in caplog.text
    assert not (path.parent / "admin-tls.crt").exists()
    async with httpx.AsyncClient(base_url=svc.urls[0]) as c:
        ready = (await c.get("/readyz")).json()
        assert any("admin listener not started" in n for n in ready["notes"]), ready
        # The kiosk itself runs on.
        assert ready["ready"] is True


async def test_plain_http_only_when_allowed_and_said_loudly(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.admin")
    svc, _ = await start(
        admin={"host": "127.0.0.1", "port": 0, "tls_self_signed": False, "allow_http": True}
    )
    assert len(svc.urls) == 2 and svc.urls[1].startswith("http://")
    assert "serves plain HTTP" in caplog.text and "clear text" in caplog.text
    async with httpx.AsyncClient(base_url=svc.urls[1]) as c:
        assert (await c.get("/admin")).status_code == 200


@pytest.mark.skipif(not _has_addr(LAN_ADDR), reason=f"no non-loopback address {LAN_ADDR} here")
async def test_admin_on_an_exposed_kiosk_listener_is_for_the_box_only(start: Start) -> None:
    svc, _ = await start(web={"host": "0.0.0.0", "port": 0})
    port = int(svc.urls[0].rsplit(":", 1)[1])
    async with (
        httpx.AsyncClient(base_url=f"http://{LAN_ADDR}:{port}") as lan,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as box,
    ):
        assert (await lan.get("/")).status_code == 200  # the kiosk page is exposed ...
        for path in ("/admin", "/admin/api/session"):
            assert (await lan.get(path)).status_code == 404  # ... its admin is not
            assert (await box.get(path)).status_code == 200  # the box itself keeps it
        r = await lan.post("/admin/api/setup", json={"password": PASSWORD})
        assert r.status_code == 404


@pytest.mark.skipif(not _has_addr(LAN_ADDR), reason=f"no non-loopback address {LAN_ADDR} here")
async def test_admin_on_the_kiosk_listener_when_asked_for(start: Start) -> None:
    svc, _ = await start(web={"host": "0.0.0.0", "port": 0}, admin={"on_kiosk_listener": True})
    port = int(svc.urls[0].rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=f"http://{LAN_ADDR}:{port}") as lan:
        assert (await lan.get("/admin")).status_code == 200
