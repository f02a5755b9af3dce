import itertools
from pathlib import Path

import trio
import trio.testing

from appliance.backoff import Backoff
from appliance.config import LLMConfig
from appliance.llm.local import local_server_args, local_threads
from appliance.metrics import Metrics
from appliance.supervisor import supervised


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
