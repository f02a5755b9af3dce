"""The admin page cannot reach the OS, and cannot brick the box.

- Paths it sets stay in the state directory (the running config file's directory), symlinks
  resolved: `/proc/self/environ`, `../`, elsewhere, site-packages are a clear 400.
- Secrets move only by deliberate, re-authenticated, audited actions: `api_key_env` only names
  `APPLIANCE_*` (or what the file already names); a key sent to a new URL needs the password.
- No config reaches disk before it was built: a bad FAQ is a 400 and the file stays as it was.
- An FAQ that cannot be loaded at start-up gives a running box on a fallback FAQ, said in the
  log, /readyz and the status page, fixed from the FAQ editor without a restart.

The real service on loopback, started from a config file; real HTTP.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import start_from_file

from appliance.config import default_faq_path, load_config
from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.supervisor import Service

PASSWORD = "correct horse battery"

Start = Callable[..., Awaitable[tuple[Service, Path]]]


@pytest.fixture
def start(nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM) -> Start:
    """Run the service from tmp_path/state/appliance.toml (the state directory), with an FAQ
    copy there unless `faq` says otherwise."""

    async def _start(faq: str = "faq.md", **sections: dict[str, Any]) -> tuple[Service, Path]:
        return await start_from_file(nursery, tmp_path / "state", llm.url, faq=faq, **sections)

    return _start


@pytest.fixture
async def admin(start: Start) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """admin(**sections) -> (service, config path, client logged in, CSRF headers)."""
    clients: list[httpx.AsyncClient] = []

    async def make(**sections: Any) -> tuple[Service, Path, httpx.AsyncClient, dict[str, str]]:
        svc, path = await start(**sections)
        c = httpx.AsyncClient(base_url=svc.urls[0], timeout=10)
        clients.append(c)
        r = await c.post("/admin/api/setup", json={"password": PASSWORD})
        assert r.status_code == 200, r.text
        return svc, path, c, {"X-CSRF-Token": r.json()["csrf"]}

    yield make
    for c in clients:
        await c.aclose()


async def audit(c: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await c.get("/admin/api/audit")
    assert r.status_code == 200
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


# -- paths ---------------------------------------------------------------------------------------


async def test_paths_outside_the_state_directory_are_a_clear_400(
    admin: Any, tmp_path: Path
) -> None:
    svc, path, c, h = await admin()
    state = path.parent
    (state / "environ.md").symlink_to("/proc/self/environ")
    outside = tmp_path / "elsewhere.md"
    outside.write_text("## Is this elsewhere?\nYes.\n")
    site = next(p for p in __import__("sys").path if p.endswith("site-packages"))
    before = path.read_bytes()
    faq_before = svc.ctx.cfg.knowledge.faq
    for key, value in [
        ("knowledge.faq", "/proc/self/environ"),
        ("knowledge.faq", "../elsewhere.md"),
        ("knowledge.faq", str(outside)),
        ("knowledge.faq", "environ.md"),  # a symlink in the state dir to /proc
        ("knowledge.faq", f"{site}/appliance-evil.pth"),
        ("knowledge.faq", "appliance.toml"),  # inside, but not an FAQ file
        ("store.path", "/tmp/elsewhere.db"),
        ("admin.tls_cert", "/etc/ssl/certs/ca-certificates.crt"),
    ]:
        r = await c.post("/admin/api/config", json={"changes": {key: value}}, headers=h)
        assert r.status_code == 400, (key, value, r.status_code, r.text)
        body = r.json()
        assert body["error"] == "invalid_config" and body["fields"] == [key], body
        assert path.read_bytes() == before
    # The section form is checked the same way.
    r = await c.post(
        "/admin/api/config",
        json={"changes": {"knowledge": {"faq": "/proc/self/environ"}}},
        headers=h,
    )
    assert r.status_code == 400 and r.json()["fields"] == ["knowledge.faq"], r.text
    assert path.read_bytes() == before and svc.ctx.cfg.knowledge.faq == faq_before
    # The FAQ editor still reads the real FAQ (no environment variables in it).
    assert "## " in (await c.get("/admin/api/faq")).json()["text"]


async def test_an_faq_inside_the_state_directory_can_be_chosen(admin: Any) -> None:
    svc, path, c, h = await admin()
    (path.parent / "winter.md").write_text("## Is the pier open in winter?\nOnly at weekends.\n")
    r = await c.post(
        "/admin/api/config", json={"changes": {"knowledge.faq": "winter.md"}}, headers=h
    )
    assert r.status_code == 200, r.text
    assert load_config(path).knowledge.faq == str(path.parent / "winter.md")
    assert [e.question for e in svc.ctx.runner.knowledge.entries] == ["Is the pier open in winter?"]


async def test_an_faq_that_does_not_load_is_refused_before_saving(admin: Any) -> None:
    """Before: the path was saved, then applying it raised (a 500), and every restart refused
    the saved file."""
    svc, path, c, h = await admin()
    (path.parent / "empty.md").write_text("# Our venue\n\nNo questions yet.\n")
    before = path.read_bytes()
    kb_before = svc.ctx.runner.knowledge
    for value in (str(path.parent / "empty.md"), "empty.md", "missing.md"):
        r = await c.post("/admin/api/config", json={"changes": {"knowledge.faq": value}}, headers=h)
        assert r.status_code == 400, r.text
        assert r.json()["fields"] == ["knowledge.faq"]
        assert Path(value).name in r.json()["message"]
        assert path.read_bytes() == before
        assert svc.ctx.runner.knowledge is kb_before
    assert load_config(path).knowledge.faq == str(path.parent / "faq.md")


async def test_the_faq_editor_writes_only_inside_the_state_directory(
    admin: Any, tmp_path: Path
) -> None:
    outside = tmp_path / "site-faq.md"
    shutil.copy(default_faq_path(), outside)
    _svc, _, c, h = await admin(faq=str(outside))  # the config file may name it; the page reads it
    text = (await c.get("/admin/api/faq")).json()["text"]
    assert text == outside.read_text()
    r = await c.post("/admin/api/faq", json={"text": "## New?\nYes.\n"}, headers=h)
    assert r.status_code == 409 and r.json()["error"] == "faq_read_only", r.text
    assert outside.read_text() == text


# -- secrets -------------------------------------------------------------------------------------


def endpoints(llm: ScriptedLLM, url: str | None = None, key: str = "APPLIANCE_LLM_KEY") -> Any:
    return [{"name": "scripted", "url": url or llm.url, "model": "m", "api_key_env": key}]


async def test_api_key_env_names_only_appliance_variables(admin: Any, llm: ScriptedLLM) -> None:
    _svc, path, c, h = await admin()
    before = path.read_bytes()
    for name in ("AWS_SECRET_ACCESS_KEY", "HOME", "NOTIFY_SOCKET"):
        changes = {"llm.endpoints": endpoints(llm, key=name)}
        r = await c.post("/admin/api/config", json={"changes": changes}, headers=h)
        assert r.status_code == 400 and "APPLIANCE_" in r.json()["message"], r.text
        assert path.read_bytes() == before


async def test_a_key_sent_to_a_new_url_needs_the_password_and_is_audited(
    admin: Any, llm: ScriptedLLM
) -> None:
    _svc, path, c, h = await admin(
        llm={"endpoints": endpoints(llm)},  # the file names the key (set on the box)
    )
    before = path.read_bytes()
    evil = {"llm.endpoints": endpoints(llm, url="https://collector.example/v1")}
    r = await c.post("/admin/api/config", json={"changes": evil}, headers=h)
    assert r.status_code == 401 and r.json()["error"] == "reauth_required", r.text
    assert "collector.example" in r.json()["message"]
    r = await c.post(
        "/admin/api/config", json={"changes": evil, "password": "not the password"}, headers=h
    )
    assert r.status_code == 401 and r.json()["error"] == "bad_password"
    assert path.read_bytes() == before
    # Changes that keep every key where it was need no password.
    r = await c.post("/admin/api/config", json={"changes": {"dialog.idle_reset_s": 50}}, headers=h)
    assert r.status_code == 200, r.text
    r = await c.post("/admin/api/config", json={"changes": evil, "password": PASSWORD}, headers=h)
    assert r.status_code == 200, r.text
    assert load_config(path).llm.endpoints[0].url == "https://collector.example/v1"
    actions = [(e["action"], e["detail"]) for e in await audit(c)]
    refused = [d for a, d in actions if a == "secret_move_refused"]
    assert len(refused) == 2 and all("collector.example" in d for d in refused)
    moved = [d for a, d in actions if a == "secret_moved"]
    assert len(moved) == 1 and "APPLIANCE_LLM_KEY" in moved[0] and "collector.example" in moved[0]


# -- a bad FAQ at start-up -----------------------------------------------------------------------


async def test_an_unloadable_faq_at_start_falls_back_and_says_so(
    admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="appliance.service")
    svc, path, c, h = await admin(faq="missing.md")
    assert any("FAQ UNAVAILABLE" in r.getMessage() for r in caplog.records)
    ready = (await c.get("/readyz")).json()
    assert ready["ready"] is True
    assert any("FAQ unavailable" in n and "missing.md" in n for n in ready["notes"]), ready
    status = (await c.get("/admin/api/status")).json()
    assert "missing.md" in status["knowledge"]["problem"]
    # The fallback states no venue facts: no entry of the shipped (fictional) sample.
    sample = {"What are the opening hours?", "How much is a ticket?"}
    assert not sample & {e.question for e in svc.ctx.runner.knowledge.entries}
    # The FAQ editor opens empty, saying why (not an error page) ...
    faq = (await c.get("/admin/api/faq")).json()
    assert faq["text"] == "" and "missing.md" in faq["problem"]
    # ... and staff fix it from there, no restart: the file is written and loaded.
    r = await c.post("/admin/api/faq", json={"text": "## When do you open?\nAt nine.\n"}, headers=h)
    assert r.status_code == 200, r.text
    assert (path.parent / "missing.md").read_text().startswith("## When do you open?")
    ready = (await c.get("/readyz")).json()
    assert not any("FAQ" in n for n in ready["notes"]), ready
