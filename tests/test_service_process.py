"""The service as systemd runs it: `appliance run` in its own process, a real NOTIFY_SOCKET."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from appliance.bench.procs import free_port
from appliance.fakes.scripted_llm import Script, ScriptedLLM


def _write_config(tmp_path: Path, llm_url: str, port: int) -> Path:
    cfg = {
        "web": {"host": "127.0.0.1", "port": port},
        "llm": {"spawn_local": False, "endpoints": [{"name": "scripted", "url": llm_url}]},
        "audio": {"enabled": False},
        "knowledge": {"semantic": False},
        "store": {"path": str(tmp_path / "log.db")},
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


async def _datagrams(sock: trio.socket.SocketType, until: bytes, seen: list[bytes]) -> None:
    while not any(until in d for d in seen):
        seen.append(await sock.recv(4096))


async def test_ready_watchdog_sigterm_graceful(
    tmp_path: Path, nursery: trio.Nursery, llm: ScriptedLLM
) -> None:
    port = free_port()
    config = _write_config(tmp_path, llm.url, port)
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(tmp_path / "notify.sock"))
    env = {
        "PATH": "/usr/bin:/bin",
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "400000",  # 0.4 s: pings every 0.2 s
    }
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen: list[bytes] = []
    try:
        with trio.fail_after(60):
            await _datagrams(notify, b"READY=1", seen)
        ready = next(d for d in seen if b"READY=1" in d).decode()
        assert "STATUS=ready" in ready and "scripted=ok" in ready
        with trio.fail_after(5):
            await _datagrams(notify, b"WATCHDOG=1", seen)

        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send_message(json.dumps({"type": "text", "text": "hello there"}))
            with trio.fail_after(10):
                while json.loads(await ws.get_message())["type"] != "reply.done":
                    pass
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1001
            await ws._stream.aclose()
        with trio.fail_after(5):
            code = await proc.wait()
        assert code == 0
        with trio.fail_after(1):
            await _datagrams(notify, b"STOPPING=1", seen)
        # The turn was flushed to the conversation log before exit.
        db = sqlite3.connect(tmp_path / "log.db")
        rows = db.execute("select user_text, outcome from turns").fetchall()
        db.close()
        assert rows == [("hello there", "ok")]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()


def test_bad_config_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[web]\nport = "eighty"\n[budgets]\nturn_s = -1\n')
    run = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "web.port: expected int" in run.stderr
    assert "budgets.turn_s: must be > 0" in run.stderr


def test_doctor_reports_and_fails_on_dead_endpoint(tmp_path: Path) -> None:
    config = _write_config(tmp_path, "http://127.0.0.1:9/v1", free_port())
    run = subprocess.run(
        [sys.executable, "-m", "appliance", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "OK   knowledge: 25 FAQ entries" in run.stdout
    assert "FAIL endpoint scripted: http://127.0.0.1:9/v1: refused" in run.stdout
    assert "onnxruntime" in run.stdout
    voice = next(line for line in run.stdout.splitlines() if " voice:" in line)
    assert voice.startswith(("OK   voice: disabled", "OK   voice: listen")), voice


async def test_ask_streams_reply_from_running_service(start_service: Any, llm: ScriptedLLM) -> None:
    llm.script = Script(reply="We open at half past nine.")
    svc = await start_service()
    run = await trio.run_process(
        [
            sys.executable,
            "-m",
            "appliance",
            "ask",
            "--url",
            svc.urls[0],
            "When",
            "do",
            "you",
            "open?",
        ],
        capture_stdout=True,
        capture_stderr=True,
    )
    assert run.returncode == 0
    assert run.stdout.decode().strip() == "We open at half past nine."
    assert llm.requests[-1]["messages"][-1]["content"] == "When do you open?"


async def test_unusable_faq_starts_on_the_fallback_and_says_why(
    tmp_path: Path, llm: ScriptedLLM
) -> None:
    """An FAQ that cannot be loaded does not keep the box down (under systemd that was a
    restart loop with the admin page, the tool to fix it, down too): READY=1 comes, the log
    says why at error level, /readyz carries the note."""
    import httpx

    from appliance.bench.procs import log_records, run_appliance

    faq = tmp_path / "faq.md"
    faq.write_text("# Our venue\n\nNo questions yet.\n")
    config = {
        "web": {"host": "127.0.0.1", "port": free_port()},
        "llm": {"spawn_local": False, "endpoints": [{"name": "scripted", "url": llm.url}]},
        "audio": {"enabled": False},
        "voice": {"enabled": False},
        "knowledge": {"faq": str(faq), "semantic": False},
        "store": {"path": str(tmp_path / "log.db")},
    }
    async with run_appliance(config, tmp_path / "run") as app:
        async with httpx.AsyncClient() as c:
            ready = (await c.get(app.base_url + "/readyz")).json()
    assert app.exit_code == 0
    assert any("FAQ unavailable" in n and str(faq) in n for n in ready["notes"]), ready
    errors = [r for r in log_records(app.log_path) if r.get("level") == "error"]
    assert any("FAQ UNAVAILABLE" in str(r["msg"]) and str(faq) in str(r["msg"]) for r in errors)
