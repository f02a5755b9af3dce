"""The answer policy and the fact guard in the running service, over /ws with the real
embedder: how each kind of answer reaches the kiosk (reply.done's kind and choices), a
clarification answered by a button or in words, and generated replies that invent a fact
(a scripted LLM writes each kind of invention, mid-stream included) never shown or spoken."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import StartService

from appliance.fakes.scripted_llm import Script, ScriptedLLM

FAQ_MODE = {"semantic": True, "answer_mode": "faq"}
LLM_MODE = {"semantic": True, "answer_mode": "llm", "fact_guard": True}


def deltas(seen: list[dict[str, Any]], turn: int) -> str:
    """Every piece of reply text the page was sent for `turn` (resets included)."""
    return " | ".join(m["text"] for m in seen if m["type"] == "reply.delta" and m["turn"] == turn)


async def metric(svc: Any, name: str) -> str:
    async with httpx.AsyncClient(base_url=svc.urls[0]) as http:
        text = (await http.get("/metrics")).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_each_kind_reaches_the_page_and_the_log(
    start_service: StartService, llm: ScriptedLLM, connect: Any
) -> None:
    svc = await start_service(knowledge=FAQ_MODE)
    async with connect(svc) as c:
        await c.hello()
        faq = await c.ask("how much is an adult ticket")
        chat = await c.ask("hello there")
        decline = await c.ask("can you book me a taxi to the airport")
        again = await c.ask("um")
    assert (faq["kind"], chat["kind"], decline["kind"], again["kind"]) == (
        "faq",
        "chat",
        "decline",
        "say_again",
    )
    assert "€12" in faq["text"] and "staff" in decline["text"]
    assert not [r for r in llm.requests if r.get("stream")]  # no reply was generated
    assert svc.ctx.runner.store is not None and svc.ctx.store is not None
    await svc.ctx.runner.store.flush()
    rows = svc.ctx.store.recent_turns(10)
    assert sorted(r.kind for r in rows) == ["chat", "decline", "faq", "say_again"]
    assert 'kind="decline"' in await metric(svc, "appliance_answers_total")


async def test_staff_word_the_small_talk_replies(start_service: StartService, connect: Any) -> None:
    svc = await start_service(
        knowledge=FAQ_MODE, chat={"greeting": "Ahoy! Ask me about {topics}.", "thanks": ""}
    )
    async with connect(svc) as c:
        await c.hello()
        hello = await c.ask("hello there")
        thanks = await c.ask("thank you")
    assert hello["kind"] == "chat" and hello["text"].startswith("Ahoy! Ask me about ")
    assert "{topics}" not in hello["text"]
    assert thanks["text"] == "You're welcome! Is there anything else I can help you with?"


async def test_a_clarification_is_answered_by_a_button_or_in_words(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service(knowledge=FAQ_MODE)
    async with connect(svc) as c:
        await c.hello()
        # The opening hours, or public holidays? Too close to pick (test_policy.py).
        ask = await c.ask("is the museum open on mondays at all?")
        assert ask["kind"] == "clarify", ask
        assert 2 <= len(ask["choices"]) <= 3
        first = ask["choices"][0]
        assert {"id", "label"} <= set(first) and first["label"].endswith("?")
        await c.send({"type": "choose", "turn": ask["turn"], "id": first["id"]})
        chosen = await c.until("reply.done")
        assert chosen["kind"] == "faq" and chosen["turn"] == ask["turn"] + 1
        # A stale button (an older turn) is refused with a clear error, the connection stays.
        await c.send({"type": "choose", "turn": ask["turn"], "id": first["id"]})
        assert (await c.until("error"))["code"] == "choice_expired"
        await c.hello()  # a new visitor: no context from the first one
        again = await c.ask("is the museum open on mondays at all?")
        assert again["kind"] == "clarify"
        second = again["choices"][1]
        answered = await c.ask("the second one")
    assert answered["kind"] == "faq"
    assert answered["text"] != chosen["text"] or second["label"] == first["label"]


async def test_a_misheard_faq_word_is_asked_back(start_service: StartService, connect: Any) -> None:
    """knowledge.soundalike (on by default): "we'll chair" (ASR for "wheelchair") leads to "Do
    you mean ...?" instead of a decline; a visitor's "yes" then gets the staff's answer."""
    svc = await start_service(knowledge={**FAQ_MODE, "soundalike": True})
    async with connect(svc) as c:
        await c.hello()
        ask = await c.ask("can I borrow a we'll chair")
        assert ask["kind"] == "clarify", ask
        assert [ch["label"] for ch in ask["choices"]] == ["Is the museum wheelchair accessible?"]
        yes = await c.ask("yes")
    assert yes["kind"] == "faq" and "wheelchairs" in yes["text"]
    off = await start_service(knowledge={**FAQ_MODE, "soundalike": False})
    async with connect(off) as c:
        await c.hello()
        assert (await c.ask("can I borrow a we'll chair"))["kind"] == "decline"


INVENTIONS = [
    ("price", "An adult ticket costs €15."),
    ("time", "We open at 8:15 every morning."),
    ("phone", "Call us on 0161 555 0199 for tickets."),
    ("email", "Write to tickets@example.org for tickets."),
    ("url", "Buy them at www.cheap-tickets.example.com today."),
    ("name", "Ask our curator Margaret Thornbury about tickets."),
    ("number word", "Tickets cost twenty euros for adults."),
    # Mid-stream: the first clause is true and may be shown; the invention never is.
    ("mid-stream", "Tickets are sold at the entrance, and an adult ticket costs €19."),
]


@pytest.mark.parametrize(("what", "invented"), INVENTIONS, ids=[w for w, _ in INVENTIONS])
async def test_an_invented_fact_is_never_shown_and_the_reply_is_replaced(
    start_service: StartService, llm: ScriptedLLM, connect: Any, what: str, invented: str
) -> None:
    llm.script = Script(reply=invented)
    svc = await start_service(knowledge=LLM_MODE)
    async with connect(svc) as c:
        await c.hello()
        done = await c.ask("how much is an adult ticket")
    shown = deltas(c.seen, done["turn"])
    bad = invented.split()[-1].rstrip(".")  # the invented part ends each reply
    assert bad not in shown and bad not in done["text"], shown
    assert done["kind"] in ("faq", "clarify", "decline") and done["outcome"] == "ok"
    assert "appliance_guard_rejections_total" in await metric(svc, "appliance_guard_rejections")


async def test_a_grounded_generated_reply_passes(
    start_service: StartService, llm: ScriptedLLM, connect: Any
) -> None:
    llm.script = Script(reply="An adult ticket is €12, and students pay €9.")
    svc = await start_service(knowledge=LLM_MODE)
    async with connect(svc) as c:
        await c.hello()
        done = await c.ask("how much is an adult ticket")
    assert done["kind"] == "llm" and done["text"] == "An adult ticket is €12, and students pay €9."
    assert "appliance_guard_rejections_total" not in await metric(svc, "appliance_guard_rejections")


async def test_a_reply_that_repeats_the_question_is_replaced(
    start_service: StartService, llm: ScriptedLLM, connect: Any
) -> None:
    llm.script = Script(reply="How much is an adult ticket?")
    svc = await start_service(knowledge=LLM_MODE)
    async with connect(svc) as c:
        await c.hello()
        done = await c.ask("how much is an adult ticket")
    assert done["text"] != "How much is an adult ticket?" and done["kind"] != "llm"


async def test_the_first_clause_goes_out_once_it_passes_the_guard_while_the_model_still_writes(
    start_service: StartService, llm: ScriptedLLM, connect: Any
) -> None:
    """Checked clause by clause, not reply by reply: the first clause is shown (and, in a voice
    turn, handed to TTS) while the model is still writing; here it stalls right after it."""
    llm.script = Script(
        mode="stall",
        reply="The Lantern Café is on the ground floor. It serves soup until 17:00.",
        stall_after_tokens=8,
    )
    svc = await start_service(
        knowledge={"semantic": False, "answer_mode": "open", "fact_guard": True},
        budgets={"first_token_s": 5.0, "stall_s": 30.0, "turn_s": 60.0},
    )
    async with connect(svc) as c:
        await c.hello()
        await c.send({"type": "text", "text": "Is there a café?"})
        first = await c.until("reply.delta")
        assert first["text"] == "The Lantern Café is on the ground floor. "
        assert llm.active == 1  # the stream is still open: nothing waited for the reply's end
        await c.send({"type": "cancel"})
        assert (await c.until("state"))["state"] == "idle"
