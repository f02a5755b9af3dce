"""The admin page in real Chromium: first run, status, settings (invalid and valid), export."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from appliance.config import load_config

from .harness import Kiosk, screenshot

PASSWORD = "a quiet harbour at dawn"


def test_admin_first_run_status_settings_export(page: Page, kiosk: Kiosk) -> None:
    # A visitor's question, so there is something to export.
    with httpx.Client(base_url=kiosk.url, timeout=10) as http:
        with http.stream("POST", "/api/chat", json={"text": "Where is the lighthouse lens?"}) as r:
            assert r.status_code == 200
            assert "reply.done" in "".join(r.iter_text())
    page.goto(kiosk.url + "/admin")
    # First run from the box itself: no setup code needed.
    expect(page.locator("#view-setup")).to_be_visible()
    expect(page.locator("#setup-code-row")).to_be_hidden()
    page.fill("#setup-password", PASSWORD)
    page.fill("#setup-password2", PASSWORD)
    page.click("#setup-form button[type=submit]")
    expect(page.locator("#view-status")).to_be_visible()
    expect(page.locator("#status-cards")).to_contain_text("Ready")
    expect(page.locator("#status-cards")).to_contain_text("scripted")
    expect(page.locator("#status-turns svg.waterfall").first).to_be_visible(timeout=10_000)
    screenshot(page, "admin-status")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["appliance_admin"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"

    # Settings: an invalid value is refused with the field named; the old config stays.
    page.click("#tabs button[data-tab=settings]")
    field = page.locator('[data-key="dialog.idle_reset_s"]')
    expect(field).to_be_visible()
    before = kiosk.config_path.read_bytes()
    field.fill("-5")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#settings-error")).to_contain_text("dialog.idle_reset_s")
    expect(page.locator('[data-field="dialog.idle_reset_s"]')).to_have_class("field invalid")
    assert kiosk.config_path.read_bytes() == before
    assert kiosk.ctx.cfg.dialog.idle_reset_s == 120.0
    screenshot(page, "admin-settings-invalid")
    # A valid edit is saved and applied live.
    field.fill("90")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#flash")).to_contain_text("applied now: dialog.idle_reset_s")
    assert kiosk.ctx.cfg.dialog.idle_reset_s == 90.0
    assert load_config(kiosk.config_path).dialog.idle_reset_s == 90.0

    # Conversations: the waterfall and a CSV export.
    page.click("#tabs button[data-tab=conversations]")
    expect(page.locator("#conv-list")).to_contain_text("Where is the lighthouse lens?")
    with page.expect_download() as dl:
        page.click("#export-csv")
    text = Path(dl.value.path()).read_text()
    assert text.startswith("started_at,session,turn")
    assert "Where is the lighthouse lens?" in text
    screenshot(page, "admin-conversations")

    # Logout, then a wrong password is refused on the login form.
    page.click("#logout")
    expect(page.locator("#view-login")).to_be_visible()
    page.fill("#login-password", "wrong password")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("Wrong password")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#view-status")).to_be_visible()


def test_waterfall_draws_marks_from_the_end_of_speech(page: Page, kiosk: Kiosk) -> None:
    """Only marks are bars (durations `*_ms` and ratios `*_rtf` are not); a voice turn's origin
    is the end of the visitor's speech, so its marks shift by vad_end_ms + asr_final_ms."""
    page.goto(kiosk.url + "/admin")
    bars = page.evaluate(
        """async (cases) => {
            const { waterfall } = await import("/ui/admin.js");  // the page's own module
            return cases.map((t) => [...waterfall(t).querySelectorAll("rect")].map(
                (r) => [r.getAttribute("data-stage"), Number(r.getAttribute("data-at"))]));
        }""",
        [
            {
                "vad_end_ms": 300,
                "asr_final_ms": 120,
                "asr_rtf": 0.08,
                "grounding": 2,
                "llm_first_token": 200,
                "llm_first_token_ms": 200,
                "tts_first_audio_ms": 60,
                "voice_to_voice_ms": 700,
                "tts_first_audio": 260,
                "total": 500,
                "playback_end": 3000,
            },
            {"grounding": 3, "first_text": 40, "llm_first_token": 40, "total": 90},
        ],
    )
    voice, text = bars
    assert voice == [
        ["vad_end", 300],
        ["asr_final", 420],
        ["grounding", 422],
        ["llm_first_token", 620],
        ["tts_first_audio", 680],
        ["total", 920],
        ["playback_end", 3420],
    ]
    assert text == [["grounding", 3], ["first_text", 40], ["llm_first_token", 40], ["total", 90]]
