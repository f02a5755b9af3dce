import trio
import trio.testing

from appliance.budgets import Timings, budget


async def test_budget_expires_on_time(autojump_clock: trio.testing.MockClock) -> None:
    t = Timings()
    with budget(t, "llm", 1.5) as b:
        await trio.sleep(10)
    assert b.expired
    assert abs(b.elapsed_s - 1.5) < 1e-9
    assert t.marks["llm_ms"] == 1500.0


async def test_budget_not_expired(autojump_clock: trio.testing.MockClock) -> None:
    with budget(None, "asr", 2.0) as b:
        await trio.sleep(0.5)
    assert not b.expired and abs(b.elapsed_s - 0.5) < 1e-9


async def test_budget_respects_outer_deadline(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    with trio.move_on_after(0.2):
        with budget(None, "tts", 5.0) as b:
            await trio.sleep(10)
    assert trio.current_time() - start == 0.2
    assert not b.expired  # the outer scope fired, not this budget


async def test_timings_first_mark_wins(autojump_clock: trio.testing.MockClock) -> None:
    t = Timings()
    await trio.sleep(0.25)
    assert t.mark("first") == 250.0
    await trio.sleep(0.25)
    assert t.mark("first") == 250.0
    assert t.as_dict() == {"first": 250.0}
