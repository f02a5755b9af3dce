"""The prompt prefix: byte-identical across turns and conversations, warmed at start-up.

A local llama.cpp server keeps the KV cache of the longest common token prefix with its last
prompt; these tests check, on the requests a real (scripted) HTTP endpoint receives, that every
LLM turn starts with the same bytes the service had the endpoint evaluate at start-up.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from support import StartService

from appliance.fakes.scripted_llm import ScriptedLLM


def _is_warm_up(req: dict[str, Any]) -> bool:
    """The prefix warm-up: the prefix alone, one token, not streamed."""
    msgs = req["messages"]
    return len(msgs) == 1 and msgs[0]["role"] == "system" and req["max_tokens"] == 1


async def test_prefix_is_warmed_before_ready_and_every_turn_starts_with_it(
    start_service: StartService, llm: ScriptedLLM, connect: Any
) -> None:
    svc = await start_service(knowledge={"prompt_faq_chars": "auto"})
    # start_service returns after READY=1: the warm-up has reached the endpoint by then.
    warm = [r for r in llm.requests if _is_warm_up(r)]
    assert len(warm) == 1 and not warm[0]["stream"]
    prefix = warm[0]["messages"][0]
    assert "Q: Can I bring my dog?" in prefix["content"]  # the FAQ itself is in it
    turns = []
    for question in ("When do you open on Sunday?", "Can I park my car nearby?"):
        async with connect(svc) as c:  # a new conversation each time
            await c.hello()
            await c.ask(question)
        turns.append(llm.requests[-1]["messages"])
    first, second = turns
    # Byte-identical prefix; the turn's own part (facts, question) only after it.
    assert first[0] == second[0] == prefix
    assert first[1:] != second[1:]
    assert [m["role"] for m in first] == ["system", "system", "user"]
    assert "9:30" in first[1]["content"] and first[2]["content"] == "When do you open on Sunday?"
    assert "Quay Street" in second[1]["content"]
    for turn in turns:  # nothing of either question leaks into the prefix
        assert "Sunday?" not in turn[0]["content"] and "park my car" not in turn[0]["content"]
    # A follow-up in one conversation: history goes between the prefix and the facts.
    async with connect(svc) as c:
        await c.hello()
        await c.ask("ECHO tell me about tours")
        await c.ask("And in German?")
    follow = llm.requests[-1]["messages"]
    assert follow[0] == prefix
    assert [m["role"] for m in follow] == ["system", "user", "assistant", "system", "user"]
    assert follow[1]["content"] == "ECHO tell me about tours"
    assert follow[3]["content"].startswith("Facts:")
    assert len([r for r in llm.requests if _is_warm_up(r)]) == 1  # warmed once, not per turn


async def test_prefix_without_the_faq_by_default(
    start_service: StartService, llm: ScriptedLLM, connect: Any
) -> None:
    svc = await start_service()
    (warm,) = [r for r in llm.requests if _is_warm_up(r)]
    assert "Q:" not in warm["messages"][0]["content"]
    async with connect(svc) as c:
        await c.hello()
        await c.ask("Can I bring my dog?")
    msgs = llm.requests[-1]["messages"]
    assert msgs[0] == warm["messages"][0] and "assistance dogs" in msgs[1]["content"]


async def test_ready_anyway_when_the_warm_up_fails(
    start_service: StartService, llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """A loopback endpoint that refuses connections: a log line, READY all the same."""
    caplog.set_level(logging.WARNING, logger="appliance.service")
    svc = await start_service(
        endpoints=[
            {"name": "gone", "url": "http://127.0.0.1:9/v1", "model": "m"},
            {"name": "scripted", "url": llm.url, "model": "m"},
        ]
    )
    assert svc.ctx.readiness.models_warm
    assert any(
        "prompt prefix not warmed" in r.getMessage() and "gone" in r.getMessage()
        for r in caplog.records
    )
    assert any(_is_warm_up(r) for r in llm.requests)  # the endpoint that is up got it


async def test_with_staff_answers_ready_does_not_wait_for_the_prefix(
    start_service: StartService, llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """answer_mode "faq": no question goes to the LLM, so READY comes first and the prefix is
    warmed right after it (on a slow 2-core box that wait was 4-5 s of the start)."""
    caplog.set_level(logging.INFO)
    svc = await start_service(knowledge={"answer_mode": "faq", "fact_guard": True})
    with trio.fail_after(20):
        while svc.ctx.warmed_prefix is None:
            await trio.sleep(0.05)  # waits for the background warm-up; asserts no timing
    said = [r.getMessage() for r in caplog.records]
    ready = next(i for i, m in enumerate(said) if m.startswith("ready in"))
    warmed = next(i for i, m in enumerate(said) if m.startswith("prompt prefix warmed"))
    assert ready < warmed
    assert len([r for r in llm.requests if _is_warm_up(r)]) == 1
