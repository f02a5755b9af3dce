"""The kiosk page in real Chromium against the real service and a scripted LLM."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Playwright, WebSocket, expect

from appliance.fakes.scripted_llm import Script, ScriptedLLM

from .harness import CHROMIUM, FLAGS, Kiosk, screenshot

# The scripted LLM streams word by word and joins words with single spaces (no newlines), so
# the streamed reply uses inline Markdown; block Markdown is checked on the renderer below.
MARKDOWN_REPLY = (
    "**Welcome!** We open at *9:30* today, Tuesday to Sunday. "
    "Tickets are at [our website](https://harbourlight.example/tickets) or the `front desk`."
)
BLOCK_MARKDOWN = """## Opening hours
We are open:

- Tuesday to *Friday*
- Weekends from **10:00**

1. Buy a ticket
2. Visit https://harbourlight.example/map.

> Last entry 45 minutes before closing.

```
<b>not bold</b>
```
"""


def sent_frames(page: Page) -> list[dict[str, Any]]:
    """Collect the JSON frames the page sends on its WebSockets."""
    frames: list[dict[str, Any]] = []

    def on_ws(ws: WebSocket) -> None:
        def on_sent(payload: str | bytes) -> None:
            if isinstance(payload, str):
                frames.append(json.loads(payload))

        ws.on("framesent", on_sent)

    page.on("websocket", on_ws)
    return frames


def open_kiosk(page: Page, kiosk: Kiosk) -> None:
    page.goto(kiosk.url)
    expect(page.locator("body")).to_have_attribute("data-status", "online")


def ask(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def last_reply(page: Page) -> Any:
    return page.locator(".msg.kiosk .bubble").last


def test_typed_question_streams_markdown_into_a_bubble(
    page: Page, kiosk: Kiosk, llm: ScriptedLLM
) -> None:
    open_kiosk(page, kiosk)
    expect(page.locator("#attract")).to_be_visible()
    expect(page.locator("#attract h1")).to_contain_text("How can I help")
    screenshot(page, "kiosk-idle")
    llm.script = Script(reply=MARKDOWN_REPLY, token_interval_s=0.08)
    ask(page, "When are you open?")
    expect(page.locator("#attract")).to_be_hidden()
    expect(page.locator(".msg.visitor .bubble")).to_have_text("When are you open?")
    # Streaming: words show up while the reply is still marked busy.
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('.msg.kiosk .bubble')].pop();"
        " return b && b.getAttribute('aria-busy') === 'true' && b.textContent.length > 0; }"
    )
    reply = last_reply(page)
    expect(reply).not_to_have_attribute("aria-busy", "true", timeout=10_000)
    expect(reply.locator("strong")).to_have_text("Welcome!")
    expect(reply.locator("em")).to_have_text("9:30")
    expect(reply.locator("code")).to_have_text("front desk")
    expect(reply.locator(".md-link")).to_contain_text("our website")
    expect(reply.locator(".md-url")).to_contain_text("harbourlight.example/tickets")
    assert page.locator("#log a").count() == 0  # links are shown, never navigable
    expect(page.locator("#announce")).to_contain_text("Welcome!")
    expect(page.locator("body")).to_have_attribute("data-state", "idle")
    screenshot(page, "kiosk-conversation")
    # Start over: the next visitor sees the attract screen and a new session.
    old = page.evaluate("sessionStorage.getItem('kiosk.session')")
    page.click("#reset")
    expect(page.locator("#attract")).to_be_visible()
    expect(page.locator("#log li")).to_have_count(0)
    page.wait_for_function(
        "old => { const s = sessionStorage.getItem('kiosk.session'); return s && s !== old; }",
        arg=old,
    )


def test_markdown_blocks_render_as_elements(page: Page, kiosk: Kiosk) -> None:
    open_kiosk(page, kiosk)
    html = page.evaluate(
        """async (src) => {
            const { renderMarkdown } = await import("/ui/markdown.js");
            const root = document.createElement("div");
            renderMarkdown(src, root);
            return root.innerHTML;
        }""",
        BLOCK_MARKDOWN,
    )
    assert html == (
        "<h3>Opening hours</h3><p>We are open:</p>"
        "<ul><li>Tuesday to <em>Friday</em></li><li>Weekends from <strong>10:00</strong></li></ul>"
        '<ol><li>Buy a ticket</li><li>Visit <span class="md-link"><span>'
        "https://harbourlight.example/map</span></span>.</li></ol>"
        "<blockquote><p>Last entry 45 minutes before closing.</p></blockquote>"
        "<pre><code>&lt;b&gt;not bold&lt;/b&gt;</code></pre>"
    )


def test_reply_with_html_renders_as_inert_text(page: Page, kiosk: Kiosk) -> None:
    open_kiosk(page, kiosk)
    evil = 'ECHO <script>window.pwned=1</script> and <img src=x onerror="window.pwned=2"> ok'
    ask(page, evil)
    reply = last_reply(page)
    expect(reply).not_to_have_attribute("aria-busy", "true")
    expect(reply).to_contain_text("<script>window.pwned=1</script>")
    expect(reply).to_contain_text('<img src=x onerror="window.pwned=2">')
    assert page.locator("#log script, #log img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_reconnects_and_resumes_after_server_restart(page: Page, kiosk: Kiosk) -> None:
    frames = sent_frames(page)
    open_kiosk(page, kiosk)
    ask(page, "First question")
    expect(last_reply(page)).not_to_have_attribute("aria-busy", "true")
    session = page.evaluate("sessionStorage.getItem('kiosk.session')")
    assert session
    kiosk.stop()
    expect(page.locator("#offline")).to_be_visible(timeout=15_000)
    expect(page.locator("#offline")).to_contain_text("reconnecting")
    screenshot(page, "kiosk-offline")
    kiosk.start()
    expect(page.locator("body")).to_have_attribute("data-status", "online", timeout=30_000)
    expect(page.locator("#offline")).to_be_hidden()
    hellos = [f for f in frames if f["type"] == "hello"]
    assert len(hellos) >= 2 and hellos[-1]["session"] == session
    ask(page, "Second question")
    expect(page.locator(".msg.kiosk .bubble")).to_have_count(2, timeout=10_000)
    expect(last_reply(page)).not_to_have_attribute("aria-busy", "true")
    # The conversation stayed on screen across the restart.
    expect(page.locator(".msg.visitor .bubble").first).to_have_text("First question")


def test_sse_fallback_when_websocket_is_blocked(page: Page, kiosk: Kiosk, llm: ScriptedLLM) -> None:
    page.route_web_socket("**/ws", lambda ws: ws.close())
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(kiosk.url)
    expect(page.locator("body")).to_have_attribute("data-status", "fallback", timeout=15_000)
    expect(page.locator("#offline")).to_be_hidden()
    llm.script = Script(reply="Answered over **server-sent events**.")
    ask(page, "Are you there?")
    reply = last_reply(page)
    expect(reply).to_contain_text("Answered over server-sent events.")
    expect(reply.locator("strong")).to_have_text("server-sent events")
    assert any(u.endswith("/api/chat") for u in posts)


def _png(path: Path, w: int, h: int) -> Path:
    im = Image.new("RGB", (w, h), (30, 90, 160))
    for x in range(0, w, 100):
        im.paste((240, 200, 80), (x, 0, x + 50, h))
    im.save(path, "PNG")
    return path


def test_image_question_sends_a_scaled_down_photo(
    page: Page, kiosk: Kiosk, llm: ScriptedLLM, tmp_path: Path
) -> None:
    frames = sent_frames(page)
    open_kiosk(page, kiosk)
    page.set_input_files("#file", _notes(tmp_path))
    expect(page.locator("#image-error")).to_contain_text("Please choose a photo")
    page.set_input_files("#file", str(_png(tmp_path / "big.png", 3000, 2000)))
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#image-error")).to_be_hidden()
    ask(page, "What is this?")
    expect(last_reply(page)).not_to_have_attribute("aria-busy", "true")
    expect(page.locator(".msg.visitor img.thumb")).to_have_count(1)
    sent = [f for f in frames if f["type"] == "text" and f.get("image")]
    assert len(sent) == 1
    header, b64 = sent[0]["image"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    raw = base64.b64decode(b64)
    with Image.open(io.BytesIO(raw)) as im:
        assert im.size == (1024, 683)  # scaled in the page's canvas, aspect kept
    assert len(raw) < 768 * 1024
    # The model received the photo with the question.
    parts = llm.requests[-1]["messages"][-1]["content"]
    assert any(p["type"] == "image_url" for p in parts)


def test_photo_on_the_kiosk_screen_uses_the_camera_never_a_file_dialog(
    playwright: Playwright, kiosk: Kiosk, llm: ScriptedLLM
) -> None:
    """The kiosk's own screen (loopback) has no file dialog (it would browse the kiosk user's
    files): the photo button opens the camera in the page. A phone's input asks for its camera."""
    b = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
    )
    try:
        ctx = b.new_context(permissions=["camera"])
        page = ctx.new_page()
        choosers: list[Any] = []
        page.on("filechooser", lambda fc: choosers.append(fc))
        frames = sent_frames(page)
        open_kiosk(page, kiosk)
        assert page.get_attribute("#file", "accept") == "image/*"
        assert page.get_attribute("#file", "capture") == "environment"
        expect(page.locator("#photo-btn")).to_be_visible()  # the (fake) camera was found
        page.click("#photo-btn")
        expect(page.locator("#camera")).to_be_visible()
        expect(page.locator("#camera-shoot")).to_be_enabled()  # the first picture is there
        page.click("#camera-shoot")
        expect(page.locator("#camera")).to_be_hidden()
        expect(page.locator("#preview")).to_be_visible()
        ask(page, "What is this?")
        expect(last_reply(page)).not_to_have_attribute("aria-busy", "true")
        sent = [f for f in frames if f["type"] == "text" and f.get("image")]
        assert len(sent) == 1 and sent[0]["image"].startswith("data:image/jpeg;base64,")
        # The keyboard path (focus the input, press Enter) opens the camera too.
        page.focus("#file")
        page.keyboard.press("Enter")
        expect(page.locator("#camera")).to_be_visible()
        # The buttons stay where they are when the picture arrives (it used to resize the
        # video and move them: a click on Cancel then could land on the video).
        cancel_at = page.locator("#camera-cancel").bounding_box()
        expect(page.locator("#camera-shoot")).to_be_enabled()
        assert page.locator("#camera-cancel").bounding_box() == cancel_at
        page.click("#camera-cancel")
        expect(page.locator("#camera")).to_be_hidden()
        assert choosers == [], "a native file dialog was opened on the kiosk screen"
    finally:
        b.close()


def test_no_camera_no_photo_button_on_the_kiosk_screen(page: Page, kiosk: Kiosk) -> None:
    choosers: list[Any] = []
    page.on("filechooser", lambda fc: choosers.append(fc))
    open_kiosk(page, kiosk)
    page.wait_for_function("() => navigator.mediaDevices !== undefined")
    cameras = page.evaluate(
        "navigator.mediaDevices.enumerateDevices()"
        ".then(l => l.filter(d => d.kind === 'videoinput').length)"
    )
    if cameras:
        pytest.skip("this browser has a camera")
    expect(page.locator("#photo-btn")).to_be_hidden()
    page.dispatch_event("#file", "click")  # even a scripted click opens no dialog
    assert choosers == []


def _notes(tmp_path: Path) -> str:
    p = tmp_path / "notes.txt"
    p.write_text("not a photo")
    return str(p)


def test_keyboard_and_font_size(page: Page, kiosk: Kiosk) -> None:
    open_kiosk(page, kiosk)
    base = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    page.click("#font-up")
    page.click("#font-up")
    bigger = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert bigger > base * 1.2
    # Keyboard only: Tab reaches the question field and Enter asks.
    page.focus("#text")
    page.keyboard.type("ECHO keyboard works")
    page.keyboard.press("Enter")
    expect(last_reply(page)).to_contain_text("keyboard works")


def test_idle_reset_clears_the_conversation(page: Page, kiosk: Kiosk) -> None:
    # The page's clock jumps while pongs only arrive in real time: the jump must stay below the
    # page's dead-socket threshold (2 heartbeats + 10 s = 50 s), or it reconnects mid-jump and
    # the test races the reconnect. 30 s exercises the same timer as the default 120 s.
    ctx = kiosk.ctx
    saved = ctx.cfg
    ctx.cfg = dataclasses.replace(
        saved, dialog=dataclasses.replace(saved.dialog, idle_reset_s=30.0)
    )
    try:
        _idle_reset(page, kiosk)
    finally:
        ctx.cfg = saved


def _idle_reset(page: Page, kiosk: Kiosk) -> None:
    page.clock.install()
    open_kiosk(page, kiosk)
    ask(page, "ECHO hello")
    expect(last_reply(page)).not_to_have_attribute("aria-busy", "true")
    # `state idle` follows reply.done; a timer that fires before it re-arms for another period.
    expect(page.locator("body")).to_have_attribute("data-state", "idle")
    idle = kiosk.ctx.cfg.dialog.idle_reset_s
    page.clock.run_for(int((idle + 1) * 1000))
    expect(page.locator("#attract")).to_be_visible()
    expect(page.locator("#log li")).to_have_count(0)


def _speech_wav(tmp_path: Path) -> Path:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed to make the fake microphone's speech")
    raw, wav = tmp_path / "q_raw.wav", tmp_path / "q.wav"
    subprocess.run(
        ["espeak-ng", "-s", "140", "-w", str(raw), "What time does the museum open on Sunday?"],
        check=True,
    )
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav), "pad", "0.5", "3"],
        check=True,
    )
    return wav


def test_voice_question_from_fake_microphone(
    playwright: Playwright, browser: Browser, kiosk: Kiosk, llm: ScriptedLLM, tmp_path: Path
) -> None:
    probe = browser.new_page()
    probe.goto(kiosk.url)
    expect(probe.locator("body")).to_have_attribute("data-status", "online")
    voice = not probe.locator("#mic").is_disabled()
    probe.close()
    if not voice:
        pytest.skip("hello.config.voice is false: the voice pipeline is not loaded")
    wav = _speech_wav(tmp_path)
    b = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *FLAGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    try:
        ctx = b.new_context(permissions=["microphone"])
        page = ctx.new_page()
        open_kiosk(page, kiosk)
        before = len(llm.requests)
        page.click("#mic")
        expect(page.locator("#mic")).to_have_attribute("aria-pressed", "true")
        visitor = page.locator(".msg.visitor .bubble").first
        expect(visitor).to_contain_text("museum", timeout=20_000, ignore_case=True)
        expect(page.locator(".msg.kiosk .bubble").first).to_contain_text(
            "Hello from the scripted model", timeout=15_000
        )
        assert len(llm.requests) > before
        screenshot(page, "kiosk-voice")
    finally:
        b.close()
