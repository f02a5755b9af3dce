"""Browser tests: the real service and a scripted LLM in background threads, Debian's Chromium
driven by Playwright's sync API. One browser per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from appliance.config import default_faq_path, load_config
from appliance.fakes.scripted_llm import Script, ScriptedLLM

from .harness import CHROMIUM, FLAGS, Kiosk, TrioThread


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    thread = TrioThread(server.serve)
    thread.start()
    yield server
    thread.cancel()


@pytest.fixture(autouse=True)
def _reset_script(llm: ScriptedLLM) -> Iterator[None]:
    llm.script = Script()
    yield
    llm.script = Script()


@pytest.fixture(scope="session")
def kiosk(llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kiosk]:
    root = tmp_path_factory.mktemp("kiosk")
    shutil.copy(default_faq_path(), root / "faq.md")
    data: dict[str, Any] = {
        "web": {"host": "127.0.0.1", "port": 0},
        "llm": {
            "spawn_local": False,
            "endpoints": [{"name": "scripted", "url": llm.url, "model": "m", "vision": True}],
        },
        "audio": {"enabled": False},
        "store": {"path": "log.db"},
        "budgets": {"first_token_s": 2.0, "stall_s": 2.0, "turn_s": 10.0, "probe_s": 2.0},
        # The pages' tests: the scripted LLM answers every question, unchecked (the answer
        # policy has its own tests; its clarify buttons are tested in test_kiosk.py).
        "knowledge": {
            "semantic": False,
            "faq": "faq.md",
            "answer_mode": "open",
            "fact_guard": False,
        },
    }
    path = root / "appliance.toml"
    path.write_text(tomli_w.dumps(data))
    k = Kiosk(load_config(path), path)
    k.start()
    yield k
    k.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed ({CHROMIUM})")
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield b
    b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
