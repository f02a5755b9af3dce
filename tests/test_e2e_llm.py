"""End to end with the real embedded LLM: llama.cpp server + SmolLM2-135M as our child process."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import trio
from support import base_url, make_config

from appliance.bench.procs import free_port
from appliance.supervisor import Service, run_service
from appliance.systemd import Notifier

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python not installed (ops/setup.sh)",
    ),
]


async def _start(
    nursery: trio.Nursery, tmp_path: Path, **sections: dict[str, Any]
) -> tuple[Service, int]:
    port = free_port()
    cfg = make_config(
        tmp_path,
        [{"name": "local", "url": f"http://127.0.0.1:{port}/v1", "model": "smollm2"}],
        llm={"spawn_local": True, "local_port": port, "temperature": 0.0},
        budgets={"first_token_s": 5.0, "stall_s": 10.0, "turn_s": 30.0, "probe_s": 60.0},
        **sections,
    )

    async def run(task_status: trio.TaskStatus[Service]) -> None:
        await run_service(
            cfg, notifier=Notifier.from_env({}), handle_signals=False, task_status=task_status
        )

    svc: Service = await nursery.start(run)
    return svc, port


async def _ask(connect: Any, svc: Service, text: str) -> dict[str, Any]:
    async with connect(svc) as c:
        await c.hello()
        done: dict[str, Any] = await c.ask(text)
        return done


async def test_faq_fact_from_real_llm(nursery: trio.Nursery, tmp_path: Path, connect: Any) -> None:
    svc, _ = await _start(nursery, tmp_path, knowledge={"semantic": True, "answer_mode": "llm"})
    done = await _ask(connect, svc, "Is there a café?")
    assert done["outcome"] == "ok" and done["timings"]["llm_first_token"] > 0
    assert "Lantern" in done["text"]  # the FAQ's café name, only known from the grounded prompt
    parking = await _ask(connect, svc, "Where can I park my car?")
    assert "Quay Street" in parking["text"]


async def test_default_mode_never_lets_the_small_model_state_facts(
    nursery: trio.Nursery, tmp_path: Path, connect: Any
) -> None:
    svc, _ = await _start(nursery, tmp_path, knowledge={"semantic": True, "answer_mode": "faq"})
    dog = await _ask(connect, svc, "can i bring my dog")
    assert "Only assistance dogs are allowed" in dog["text"] and dog["kind"] == "faq"
    hello = await _ask(connect, svc, "Hello!")
    assert hello["kind"] == "chat" and hello["text"] and "llm_first_token" not in hello["timings"]
    weather = await _ask(connect, svc, "what's the weather tomorrow?")
    assert weather["kind"] == "decline" and "llm_first_token" not in weather["timings"]


async def test_default_mode_starts_its_llm_server_after_ready(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Staff text answers (faq mode): READY does not wait for our llama.cpp server, which is
    started at READY and then probed and warmed (its prompt prefix) as soon as it listens."""
    caplog.set_level(logging.INFO)
    svc, _ = await _start(nursery, tmp_path, knowledge={"semantic": False, "answer_mode": "faq"})
    up = 'appliance_llm_endpoint_up{endpoint="local"} 1.0'
    async with httpx.AsyncClient(base_url=base_url(svc)) as http:
        with trio.fail_after(60):
            while up not in (await http.get("/metrics")).text:
                await trio.sleep(0.1)
    with trio.fail_after(30):
        while not any(r.getMessage().startswith("prompt prefix warmed") for r in caplog.records):
            await trio.sleep(0.1)
    messages = [r.getMessage() for r in caplog.records]
    ready = next(i for i, m in enumerate(messages) if m.startswith("ready in"))
    assert "local=starting" in messages[ready]
    spawned = next(i for i, m in enumerate(messages) if m.startswith("starting local LLM server"))
    assert ready < spawned


async def test_local_llm_crash_is_restarted(
    nursery: trio.Nursery, tmp_path: Path, connect: Any
) -> None:
    svc, port = await _start(
        nursery, tmp_path, knowledge={"semantic": False, "answer_mode": "open"}
    )
    pids = [p for p in os.listdir("/proc") if p.isdigit() and _is_llama(int(p), port)]
    assert len(pids) == 1
    os.kill(int(pids[0]), signal.SIGKILL)
    async with httpx.AsyncClient(base_url=base_url(svc)) as http:
        with trio.fail_after(60):
            while (
                'appliance_child_restarts_total{task="local-llm"} 1.0'
                not in (await http.get("/metrics")).text
            ):
                await trio.sleep(0.1)
    # While it restarts a turn may get the fallback; once it is back turns are answered again.
    with trio.fail_after(90):
        while (await _ask(connect, svc, "Hello!"))["outcome"] != "ok":
            await trio.sleep(0.5)


async def test_a_second_request_does_not_cut_a_streaming_reply_short(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """llama-cpp-python's server ends a streaming reply with [DONE] when another request
    arrives (`interrupt_requests`, on by default): a second visitor's turn, or our prompt-prefix
    warm-up after a restart, cut a reply short (an empty one got the fallback). Ours queues."""
    _, port = await _start(nursery, tmp_path, knowledge={"semantic": False, "answer_mode": "open"})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Count from one to one hundred in words."}],
        "max_tokens": 24,
        "temperature": 0.0,
        "stream": True,
    }
    first_chunk = trio.Event()
    finish: list[str | None] = []

    async def stream(http: httpx.AsyncClient) -> None:
        reason = None
        async with http.stream("POST", url, json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                first_chunk.set()
                choice = json.loads(line[6:])["choices"][0]
                reason = choice.get("finish_reason") or reason
        finish.append(reason)

    async with httpx.AsyncClient(timeout=60) as http:
        with trio.fail_after(60):
            async with trio.open_nursery() as both:
                both.start_soon(stream, http)
                await first_chunk.wait()
                both.start_soon(stream, http)  # arrives while the first one streams
    # Each ran to its own end (an interrupted one ends with [DONE] and no finish reason).
    assert len(finish) == 2 and all(f in ("stop", "length") for f in finish), finish


def _is_llama(pid: int, port: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"llama_cpp.server" in cmd and str(port).encode() in cmd


# trio's worker threads exit after this long idle (trio._core._thread_cache.IDLE_TIMEOUT); a
# child tied to the thread that forked it (PR_SET_PDEATHSIG) was killed then.
_THREAD_IDLE_S = 10.0


async def test_local_llm_outlives_idle_worker_threads_and_dies_with_a_killed_appliance(
    tmp_path: Path,
) -> None:
    """The appliance as systemd runs it, idle with its real llama.cpp child: the child keeps
    one pid past the thread cache's idle timeout (no restart), and a SIGKILLed appliance takes
    it along within 2 s."""
    port, web = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "web": {"host": "127.0.0.1", "port": web},
                "llm": {
                    "spawn_local": True,
                    "local_port": port,
                    "endpoints": [{"name": "local", "url": f"http://127.0.0.1:{port}/v1"}],
                },
                "audio": {"enabled": False},
                "voice": {"enabled": False},
                "knowledge": {"semantic": False},
                "store": {"path": str(tmp_path / "log.db")},
                "budgets": {"probe_s": 60.0},
            }
        )
    )
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(tmp_path / "notify.sock"))
    env = {"PATH": os.environ["PATH"], "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = None
    try:
        with trio.fail_after(90):
            while b"READY=1" not in await notify.recv(4096):
                pass
        # faq mode (the default): the child is spawned at READY.
        with trio.fail_after(10):
            while not (
                found := [
                    int(p) for p in os.listdir("/proc") if p.isdigit() and _is_llama(int(p), port)
                ]
            ):
                await trio.sleep(0.05)
        (child,) = found
        assert _ppid(child) == proc.pid
        ready_at = trio.current_time()
        # Idle: watch the child across the idle timeout of the thread that spawned it.
        while trio.current_time() - ready_at < _THREAD_IDLE_S + 4.0:
            assert _ppid(child) == proc.pid, "the local LLM server was killed while idle"
            await trio.sleep(0.25)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{web}/metrics")).text
        assert 'appliance_child_restarts_total{task="local-llm"}' not in metrics
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        with trio.fail_after(2):
            while _ppid(child) is not None:
                await trio.sleep(0.02)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if child is not None and _ppid(child) is not None:
            os.kill(child, signal.SIGKILL)
        notify.close()


def _ppid(pid: int) -> int | None:
    """The parent of a live process, None once it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if stat[0] == "Z" else int(stat[1])
