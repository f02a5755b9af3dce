import itertools

import trio
import trio.testing

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
