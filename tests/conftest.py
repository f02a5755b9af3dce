"""Shared fixtures: a scripted OpenAI-compatible server, the real service on loopback, and the
real embedder with the museum and hotel FAQs ranked by it (module scope: loaded once per test
module that asks; a module's own `museum`/`hotel`/`embedder` fixture overrides these).

Plain helpers live in support.py (test modules import them from there, never from here)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import HOTEL, SAMPLE, Client, StartService, make_config, ws_url
from trio.testing import MockClock
from trio_websocket import WebSocketConnection, open_websocket_url

from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.knowledge import KnowledgeBase
from appliance.knowledge.embeddings import Embedder
from appliance.llm.conn import KeepAlive
from appliance.supervisor import Service, run_service
from appliance.systemd import Notifier


@pytest.fixture
async def llm(nursery: trio.Nursery) -> ScriptedLLM:
    server = ScriptedLLM()
    await nursery.start(server.serve)
    return server


@pytest.fixture
async def server(llm: ScriptedLLM) -> ScriptedLLM:
    """The scripted LLM, under the name the client/pool tests use."""
    return llm


@pytest.fixture
def mock_clock() -> MockClock:
    # Real sockets: jump virtual time only after 10 ms of real idleness.
    return MockClock(autojump_threshold=0.01)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A URL where nothing listens (bound, not listening: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.fixture
def start_service(nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM) -> StartService:
    """start_service(endpoints=None, **sections) -> Service running on 127.0.0.1:<free port>."""

    async def start(
        endpoints: list[dict[str, Any]] | None = None, **sections: dict[str, Any]
    ) -> Service:
        eps = endpoints or [{"name": "scripted", "url": llm.url, "model": "m"}]
        cfg = make_config(tmp_path, eps, **sections)
        svc: Service = await nursery.start(
            partial(run_service, cfg, notifier=Notifier.from_env({}), handle_signals=False)
        )
        return svc

    return start


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Service], Any]]:
    """`async with connect(svc) as client:` opens /ws to a running service."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def _connect(svc: Service, **kw: Any) -> AsyncIterator[Client]:
        kw.setdefault("disconnect_timeout", 2)
        opened: list[WebSocketConnection] = []
        try:
            async with open_websocket_url(ws_url(svc), **kw) as ws:
                opened.append(ws)
                yield Client(ws)
        finally:
            # trio-websocket's client waits for the server's TCP close after a server-side
            # close handshake and can leave its socket to the GC; close it deterministically.
            for ws in opened:
                await ws._stream.aclose()

    yield _connect


@pytest.fixture(params=["httpx", "keepalive"])
async def via(request: pytest.FixtureRequest) -> AsyncIterator[KeepAlive | None]:
    """LLM tests run both ways: over httpx, and over kept-alive connections (llm/conn.py)."""
    if request.param == "httpx":
        yield None
        return
    keepalive = KeepAlive()
    yield keepalive
    keepalive.close()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture(scope="module")
def museum(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(SAMPLE, embedder=embedder)


@pytest.fixture(scope="module")
def hotel(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(HOTEL, embedder=embedder)
