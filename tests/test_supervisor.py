import itertools
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from support import StartService, make_config

from appliance.backoff import Backoff
from appliance.config import LLMConfig
from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.llm import local
from appliance.llm.local import local_server_args, local_threads, run_local_llm
from appliance.metrics import Metrics
from appliance.models_manifest import ModelError
from appliance.supervisor import Service, run_service, supervised
from appliance.systemd import Notifier
from appliance.voice.engine import VoiceEngine, engine_of

REPO = Path(__file__).resolve().parents[1]


async def test_crashing_task_is_restarted_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        raise RuntimeError("boom")

    metrics = Metrics()
    with trio.move_on_after(20):
        await supervised("flaky", flaky, metrics, max_backoff_s=4.0)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]  # exponential, capped
    assert metrics.child_restarts.labels(task="flaky")._value.get() == len(starts)


async def test_long_healthy_run_resets_backoff(autojump_clock: trio.testing.MockClock) -> None:
    starts: list[float] = []

    async def sometimes() -> None:
        starts.append(trio.current_time())
        if len(starts) == 3:
            await trio.sleep(120)  # a long healthy run
        raise RuntimeError("boom")

    with trio.move_on_after(200):
        await supervised("x", sometimes, Metrics())
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert gaps[:4] == [0.5, 1.0, 120.5, 1.0]  # after 120 s of health: back to 0.5 s


def test_local_llm_threads_leave_a_core_for_audio() -> None:
    assert [local_threads(0, cores) for cores in (None, 1, 2, 4, 16)] == [1, 1, 1, 3, 4]
    assert local_threads(3, 2) == 3  # an explicit setting wins
    cmd = local_server_args(LLMConfig(local_threads=2), Path("/m.gguf"))
    assert cmd[cmd.index("--n_threads") + 1] == "2"


def test_backoff_doubles_caps_and_forgives_a_healthy_run() -> None:
    b = Backoff(initial_s=1.0, max_s=4.0, healthy_s=30.0)
    assert [b.delay(0.5) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert b.delay(30.0) == 1.0  # ran healthily: the crash loop is over
    assert b.delay(2.0) == 2.0


def test_backoff_immediate_retries_the_first_failure_of_a_streak_at_once() -> None:
    b = Backoff(initial_s=1.0, max_s=4.0, healthy_s=30.0, immediate=True)
    assert [b.delay(0.5) for _ in range(5)] == [0.0, 1.0, 2.0, 4.0, 4.0]
    assert [b.delay(30.0), b.delay(1.0)] == [0.0, 1.0]  # a healthy run starts a new streak
    b.reset()
    assert [b.delay(0.0), b.delay(0.0)] == [0.0, 1.0]
    plain = Backoff(initial_s=1.0, max_s=4.0)
    plain.delay(0.0)
    plain.reset()
    assert plain.delay(0.0) == 1.0  # without `immediate`: a new streak waits initial_s


class FakeServer:
    """Stands in for the llama.cpp child process: `die()` ends it the way a SIGKILL does."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._dead = trio.Event()

    async def wait(self) -> int | None:
        await self._dead.wait()
        return self.returncode

    def die(self) -> None:
        self.returncode = -9
        self._dead.set()


async def test_local_llm_child_is_restarted_at_once_after_a_one_off_crash(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The visitor waits for the restart: a first crash (even of a child that has not yet run
    for `healthy_s`) must not wait out a backoff; a crash loop still backs off."""
    spawned: list[tuple[float, FakeServer]] = []

    async def open_process(cmd: list[str], **kwargs: Any) -> FakeServer:
        proc = FakeServer(10_000 + len(spawned))
        spawned.append((trio.current_time(), proc))
        return proc

    async def listening(url: str, proc: FakeServer, timeout_s: float) -> bool:
        return True

    monkeypatch.setattr(local, "find_local_model", lambda cfg: Path("/m.gguf"))
    monkeypatch.setattr(local, "local_server_args", lambda cfg, model: ["--model", str(model)])
    monkeypatch.setattr(local, "_wait_listening", listening)
    monkeypatch.setattr(trio.lowlevel, "open_process", open_process)

    async def crash_after(ran_s: float) -> float:
        """Let the current child run `ran_s`, kill it; seconds until the next one is spawned."""
        await trio.sleep(ran_s)
        n = len(spawned)
        spawned[-1][1].die()
        died = trio.current_time()
        while len(spawned) == n:
            await trio.sleep(0.001)
        return spawned[-1][0] - died

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_local_llm, LLMConfig()))
        first = await crash_after(10.0)  # listening 10 s (under healthy_s), then SIGKILL
        loop = [await crash_after(1.0) for _ in range(3)]
        after_health = await crash_after(60.0)
        nursery.cancel_scope.cancel()
    assert first == 0.0
    assert loop == [1.0, 2.0, 4.0]  # crashing again and again: backed off
    assert after_health == 0.0


async def test_a_voice_load_started_before_the_service_is_taken_over(
    nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM
) -> None:
    """`appliance run` starts loading the voice models before it imports the service; the
    service waits for that load instead of starting its own, and its failure (here: a model
    file missing) leaves a text-only kiosk that says why, as a failure of its own load does."""
    early: Future[VoiceEngine] = Future()
    early.set_exception(ModelError("asr_decoder: file missing: /nowhere"))
    cfg = make_config(tmp_path, [{"name": "scripted", "url": llm.url}], voice={"enabled": True})
    svc: Service = await nursery.start(
        partial(
            run_service,
            cfg,
            notifier=Notifier.from_env({}),
            handle_signals=False,
            voice_models=early,
        )
    )
    assert engine_of(svc.ctx) is None
    assert svc.ctx.readiness.notes == ["voice unavailable: asr_decoder: file missing: /nowhere"]
    assert svc.ctx.readiness.models_warm


async def test_voice_models_that_fail_to_load_leave_a_text_only_kiosk(
    start_service: StartService,
    llm: ScriptedLLM,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The voice models load from the first moment of a start, beside everything else; a
    failure there (here: the TTS voice missing from the manifest) reaches the warm-up, which
    starts the kiosk text-only and says why in /readyz's notes."""
    manifest = (REPO / "models" / "manifest.toml").read_text()
    blocks = manifest.split("[[model]]")
    kept = [b for b in blocks if 'id = "tts_voice"' not in b]
    assert len(kept) == len(blocks) - 1
    broken = tmp_path / "manifest.toml"
    broken.write_text("[[model]]".join(kept))
    monkeypatch.setenv("APPLIANCE_MODELS_MANIFEST", str(broken))
    svc = await start_service(voice={"enabled": True})
    assert engine_of(svc.ctx) is None
    (note,) = svc.ctx.readiness.notes
    assert note.startswith("voice unavailable") and "tts_voice" in note
    assert svc.ctx.readiness.models_warm  # READY all the same: the kiosk answers by text
