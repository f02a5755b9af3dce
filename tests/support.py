"""Helpers shared by test modules (fixtures live in conftest.py; tests import these from here)."""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from appliance.config import Config, parse_config
from appliance.events import AudioStart, ErrorEvent, ReplyDelta, ReplyDone, StateEvent, Transcript
from appliance.supervisor import Service

StartService = Callable[..., Awaitable[Service]]

# The two FAQs the policy tests rank: the shipped sample museum and the test hotel.
SAMPLE = Path(str(importlib.resources.files("appliance") / "data" / "sample_faq.md"))
UNDERSTAND = Path(__file__).parent / "data" / "understand"
HOTEL = UNDERSTAND / "hotel_faq.md"


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
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        # What it printed says how far it got: kept in the failure, not lost with the process.
        raise AssertionError(
            f"{' '.join(map(str, args[:6]))} ... timed out after {timeout:g} s; stderr tail:\n"
            + (err or "")[-4000:]
        ) from exc
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def make_config(
    tmp_path: Path, endpoints: list[dict[str, Any]], **sections: dict[str, Any]
) -> Config:
    data: dict[str, Any] = {
        "web": {"host": "127.0.0.1", "port": 0},
        "llm": {"spawn_local": False, "endpoints": endpoints},
        "audio": {"enabled": False},
        "store": {"path": str(tmp_path / "log.db")},
        "budgets": {"first_token_s": 1.0, "stall_s": 1.0, "turn_s": 4.0, "probe_s": 2.0},
        # The scripted LLM answers everything, unchecked: these are the transport's tests; the
        # answer policy and the fact guard have their own (test_answers.py, test_policy.py).
        "knowledge": {"semantic": False, "answer_mode": "open", "fact_guard": False},
        # Voice models load only where a test asks for them (they cost ~1 s per service start);
        # the usual replies' speech is made ahead only where a test asks for it (CPU).
        "voice": {"enabled": False, "warm_replies": False},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, base_dir=tmp_path)


def write_service_config(
    directory: Path, llm_url: str, *, faq: str = "faq.md", **sections: dict[str, Any]
) -> Path:
    """`directory`/appliance.toml for a service as the unit runs it, with a private copy of the
    sample FAQ beside it (so the admin page can edit and save both). `sections` override the
    defaults key by key."""
    import tomli_w

    from appliance.config import default_faq_path

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(default_faq_path(), directory / "faq.md")
    scripted = {"name": "scripted", "url": llm_url, "model": "m"}
    data: dict[str, Any] = {
        "web": {"host": "127.0.0.1", "port": 0},
        "llm": {"spawn_local": False, "endpoints": [scripted]},
        "audio": {"enabled": False},
        "voice": {"enabled": False, "warm_replies": False},
        "store": {"path": "log.db"},
        "budgets": {"first_token_s": 1.0, "stall_s": 1.0, "turn_s": 4.0, "probe_s": 2.0},
        "knowledge": {"semantic": False, "faq": faq},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = directory / "appliance.toml"
    path.write_text(tomli_w.dumps(data))
    return path


async def start_from_file(
    nursery: trio.Nursery, directory: Path, llm_url: str, **kw: Any
) -> tuple[Service, Path]:
    """Run the service from the file `write_service_config(directory, llm_url, **kw)` writes."""
    from appliance.config import load_config
    from appliance.supervisor import run_service
    from appliance.systemd import Notifier

    path = write_service_config(directory, llm_url, **kw)
    svc: Service = await nursery.start(
        partial(
            run_service,
            load_config(path),
            notifier=Notifier.from_env({}),
            handle_signals=False,
            config_path=path,
        )
    )
    return svc, path


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


_EVENTS: dict[str, Any] = {
    c.type: c for c in (StateEvent, Transcript, ReplyDelta, ReplyDone, ErrorEvent, AudioStart)
}


def event(msg: dict[str, Any]) -> Any:
    """The event a producer would emit for this wire message (reply.done's timings and outcome
    default to {} and "ok" when the message leaves them out)."""
    fields = {k: v for k, v in msg.items() if k != "type"}
    if msg["type"] == "reply.done":
        fields = {"timings": {}, "outcome": "ok", **fields}
    return _EVENTS[msg["type"]](**fields)
