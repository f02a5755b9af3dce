"""Shared fixtures: a scripted OpenAI-compatible server and the real service on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock
from trio_websocket import WebSocketConnection, open_websocket_url

from appliance.config import Config, parse_config
from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.supervisor import Service, run_service
from appliance.systemd import Notifier

StartService = Callable[..., Awaitable[Service]]


def run_cli(args: list[str], *, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run in its own process group; on timeout the whole group is killed, so a stuck
    command cannot leave servers it started loading the box for the rest of the suite."""
    proc = subprocess.Popen(
        args,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


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


def make_config(
    tmp_path: Path, endpoints: list[dict[str, Any]], **sections: dict[str, Any]
) -> Config:
    data: dict[str, Any] = {
        "web": {"host": "127.0.0.1", "port": 0},
        "llm": {"spawn_local": False, "endpoints": endpoints},
        "audio": {"enabled": False},
        "store": {"path": str(tmp_path / "log.db")},
        "budgets": {"first_token_s": 1.0, "stall_s": 1.0, "turn_s": 4.0, "probe_s": 2.0},
        # The scripted LLM answers everything; FAQ direct answers have their own tests.
        "knowledge": {"semantic": False},
        # Voice models load only where a test asks for them (they cost ~1 s per service start).
        "voice": {"enabled": False},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, base_dir=tmp_path)


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


def base_url(svc: Service) -> str:
    return svc.urls[0]


def ws_url(svc: Service) -> str:
    return svc.urls[0].replace("http://", "ws://") + "/ws"


class Client:
    """A kiosk client over /ws with helpers to wait for message types."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        if isinstance(msg, dict):
            msg = json.dumps(msg)
        await self.ws.send_message(msg)

    async def recv(self) -> dict[str, Any]:
        raw = await self.ws.get_message()
        assert isinstance(raw, str)
        msg: dict[str, Any] = json.loads(raw)
        self.seen.append(msg)
        return msg

    async def until(self, type_: str, within: float = 10.0) -> dict[str, Any]:
        with trio.fail_after(within):
            while True:
                msg = await self.recv()
                if msg["type"] == type_:
                    return msg

    async def hello(self, session: str | None = None) -> dict[str, Any]:
        await self.send({"type": "hello", **({"session": session} if session else {})})
        return await self.until("hello")

    async def ask(self, text: str, **extra: Any) -> dict[str, Any]:
        await self.send({"type": "text", "text": text, **extra})
        done = await self.until("reply.done")
        assert (await self.until("state"))["state"] == "idle"
        return done


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
