"""The kiosk screen shows the box's own microphone conversation (`voice.local {msg}` on /ws).

The page is opened from 127.0.0.1 like the kiosk browser on the box, so it asks for the mirror;
local voice messages are published into the running service's mirror (the object
`LocalVoice.emit` publishes to) on its own trio thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support import event

from appliance.fakes.scripted_llm import Script, ScriptedLLM

from .harness import Kiosk, screenshot

LOCAL_REPLY = "We open at **9:30**; ask at the `front desk`."


def publish(kiosk: Kiosk, *msgs: dict[str, Any]) -> None:
    """Hand messages to the local voice mirror, in order, on the service's trio thread."""
    assert kiosk.thread is not None
    mirror = kiosk.ctx.local_mirror
    for m in msgs:
        kiosk.thread.call_soon(lambda m=m: mirror.publish(event(m)))


@pytest.fixture(autouse=True)
def _local_idle_after(kiosk: Kiosk) -> Iterator[None]:
    # The mirror replays its last state to every new page: leave it idle for the other tests.
    yield
    publish(kiosk, {"type": "state", "state": "idle"})


def open_screen(page: Page, kiosk: Kiosk) -> None:
    page.goto(kiosk.url)
    body = page.locator("body")
    expect(body).to_have_attribute("data-status", "online")
    expect(body).to_have_attribute("data-mirror", "on")  # the server granted the mirror


def local_exchange(question: str, reply: str, turn: int = 1) -> list[dict[str, Any]]:
    half = len(reply) // 2
    return [
        {"type": "transcript", "text": question, "final": True},
        {"type": "state", "state": "thinking"},
        {"type": "reply.delta", "turn": turn, "text": reply[:half]},
        {"type": "reply.delta", "turn": turn, "text": reply[half:]},
        {"type": "state", "state": "speaking"},
        {"type": "reply.done", "turn": turn, "text": reply, "outcome": "ok", "timings": {}},
        {"type": "state", "state": "idle"},
    ]


def test_local_voice_turn_shows_as_bubbles(page: Page, kiosk: Kiosk) -> None:
    open_screen(page, kiosk)
    body = page.locator("body")
    publish(kiosk, {"type": "state", "state": "listening"})
    expect(body).to_have_attribute("data-state", "listening")
    expect(page.locator("#state-label")).to_have_text("Listening…")
    # Partials show live in the transcript line, as for the page's own microphone.
    publish(kiosk, {"type": "transcript", "text": "when do you", "final": False})
    expect(page.locator("#transcript")).to_be_visible()
    expect(page.locator("#transcript")).to_have_text("when do you")
    expect(page.locator("#attract")).to_be_visible()  # no bubble for a partial
    publish(kiosk, {"type": "transcript", "text": "When do you open?", "final": True})
    expect(page.locator("#transcript")).to_be_hidden()
    expect(page.locator(".msg.visitor.local .bubble")).to_have_text("When do you open?")
    expect(page.locator("#attract")).to_be_hidden()
    publish(kiosk, {"type": "state", "state": "thinking"})
    expect(body).to_have_attribute("data-state", "thinking")
    publish(kiosk, {"type": "reply.delta", "turn": 1, "text": "We open at **9:30**; "})
    reply = page.locator(".msg.kiosk.local .bubble")
    expect(reply).to_have_attribute("aria-busy", "true")
    expect(reply.locator("strong")).to_have_text("9:30")  # Markdown while streaming
    publish(
        kiosk,
        {"type": "state", "state": "speaking"},
        {"type": "reply.delta", "turn": 1, "text": "ask at the `front desk`."},
    )
    expect(body).to_have_attribute("data-state", "speaking")
    expect(reply.locator("code")).to_have_text("front desk")
    publish(
        kiosk,
        {"type": "reply.done", "turn": 1, "text": LOCAL_REPLY, "outcome": "ok", "timings": {}},
    )
    expect(reply).not_to_have_attribute("aria-busy", "true")
    expect(reply).to_have_text("We open at 9:30; ask at the front desk.")
    expect(page.locator(".msg.kiosk.local")).to_have_attribute("data-outcome", "ok")
    # The box says its reply aloud; the page does not announce it a second time.
    expect(page.locator("#announce")).not_to_contain_text("9:30")
    publish(kiosk, {"type": "state", "state": "idle"})
    expect(body).to_have_attribute("data-state", "idle")
    expect(page.locator("#state-label")).to_have_text("Ready")
    screenshot(page, "kiosk-local-voice")
    # After the local conversation's idle reset its turns count from 1 again: a new bubble.
    publish(kiosk, *local_exchange("Where are the toilets?", "Next to the *cloakroom*."))
    expect(page.locator(".msg.kiosk.local .bubble")).to_have_count(2)
    second = page.locator(".msg.kiosk.local .bubble").last
    expect(second.locator("em")).to_have_text("cloakroom")
    expect(reply.first).to_have_text("We open at 9:30; ask at the front desk.")
    # Start over clears the local turns as well.
    page.click("#reset")
    expect(page.locator("#log li")).to_have_count(0)
    expect(body).to_have_attribute("data-mirror", "on")


def test_local_turn_during_the_pages_own_turn_keeps_both_readable(
    page: Page, kiosk: Kiosk, llm: ScriptedLLM
) -> None:
    open_screen(page, kiosk)
    own = "Tickets cost twelve euros for adults and six for children under sixteen."
    llm.script = Script(reply=own, token_interval_s=0.1)
    page.fill("#text", "How much is a ticket?")
    page.press("#text", "Enter")
    own_reply = page.locator(".msg.kiosk:not(.local) .bubble")
    page.wait_for_function(
        "() => { const b = document.querySelector('.msg.kiosk:not(.local) .bubble');"
        " return b && b.getAttribute('aria-busy') === 'true' && b.textContent.length > 0; }"
    )
    # Both conversations number their first turn 1; the local one arrives mid-reply.
    publish(kiosk, *local_exchange("Can I bring my dog?", "Only **assistance dogs**."))
    local_reply = page.locator(".msg.kiosk.local .bubble")
    expect(local_reply).not_to_have_attribute("aria-busy", "true")
    expect(local_reply.locator("strong")).to_have_text("assistance dogs")
    expect(page.locator(".msg.visitor.local .bubble")).to_have_text("Can I bring my dog?")
    expect(own_reply).not_to_have_attribute("aria-busy", "true", timeout=15_000)
    expect(own_reply).to_have_text(own)
    expect(local_reply).to_have_text("Only assistance dogs.")
    expect(page.locator(".msg.visitor:not(.local) .bubble")).to_have_text("How much is a ticket?")
    expect(page.locator("body")).to_have_attribute("data-state", "idle")
    expect(page.locator("#announce")).to_have_text(own)


def test_only_the_box_itself_asks_for_the_mirror(page: Page, kiosk: Kiosk) -> None:
    open_screen(page, kiosk)
    verdicts = page.evaluate(
        """async () => {
            const { isLoopbackHost } = await import("/ui/connection.js");
            return ["127.0.0.1", "localhost", "[::1]", "127.1.2.3",
                    "192.168.1.20", "kiosk.local", "10.0.0.127", "example.com"]
                .map(isLoopbackHost);
        }"""
    )
    assert verdicts == [True, True, True, True, False, False, False, False]
