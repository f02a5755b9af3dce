"""Admin API over real HTTP: first run, login, lockout, CSRF, settings, FAQ, conversations."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import Client, start_from_file

from appliance.admin.auth import LoginThrottle, is_loopback
from appliance.admin.conversations import to_csv
from appliance.admin.settings import plan_edit
from appliance.config import ConfigError, load_config, parse_config
from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.store import TurnRecord
from appliance.supervisor import Service, run_service
from appliance.systemd import Notifier

PASSWORD = "correct horse battery"
LAN_ADDR = "192.0.2.2"  # this sandbox's non-loopback address, if it has one

Start = Callable[..., Awaitable[tuple[Service, Path]]]


def _has_addr(addr: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
    except OSError:
        return False
    return True


@pytest.fixture
def start(nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM) -> Start:
    """Write a config file (with a private FAQ copy) and run the service from it."""

    async def _start(**sections: dict[str, Any]) -> tuple[Service, Path]:
        knowledge = {"answer_mode": "open", "fact_guard": False, **sections.pop("knowledge", {})}
        return await start_from_file(nursery, tmp_path, llm.url, knowledge=knowledge, **sections)

    return _start


@pytest.fixture
async def http() -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(base: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(base_url=base, timeout=10)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


async def setup_admin(c: httpx.AsyncClient, **extra: Any) -> str:
    r = await c.post("/admin/api/setup", json={"password": PASSWORD, **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


async def audit_actions(c: httpx.AsyncClient) -> list[str]:
    r = await c.get("/admin/api/audit")
    assert r.status_code == 200
    return [e["action"] for e in r.json()["entries"]]


# -- pure pieces ---------------------------------------------------------------------------------


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    for addr in ("192.0.2.2", "10.0.0.1", "::ffff:10.0.0.1", "fd00::2", "", None, "bogus"):
        assert not is_loopback(addr)


def test_throttle_locks_an_address_then_releases() -> None:
    t = LoginThrottle(max_failures=3, lockout_s=60.0, window_s=600.0)
    assert t.failure("a", 0.0) == 0.0 and t.failure("a", 1.0) == 0.0
    assert t.failure("a", 2.0) == 60.0
    assert t.locked_for("a", 30.0) == pytest.approx(32.0)
    assert t.locked_for("b", 30.0) == 0.0  # other addresses are not punished
    assert t.locked_for("a", 62.0) == 0.0
    # Failures spread out over longer than the window never lock.
    t2 = LoginThrottle(max_failures=2, lockout_s=60.0, window_s=10.0)
    assert t2.failure("a", 0.0) == 0.0 and t2.failure("a", 20.0) == 0.0


def test_throttle_global_limit_catches_many_addresses() -> None:
    t = LoginThrottle(max_failures=3, lockout_s=60.0, global_factor=2)
    for i in range(5):
        assert t.failure(f"10.0.0.{i}", float(i)) == 0.0
    assert t.failure("10.0.0.99", 5.0) == 60.0  # 6th failure overall
    assert t.locked_for("10.0.0.200", 6.0) > 0


def test_plan_edit_splits_live_and_restart(tmp_path: Path) -> None:
    cfg = parse_config({"llm": {"spawn_local": False}, "knowledge": {"semantic": False}})
    edit = plan_edit(cfg, cfg, {"dialog.idle_reset_s": 30, "web.port": 9999})
    assert edit.changed == ["dialog.idle_reset_s", "web.port"]
    assert edit.restart == ["web.port"]
    assert edit.saved.web.port == 9999 and edit.live.web.port == cfg.web.port
    assert edit.live.dialog.idle_reset_s == 30
    with pytest.raises(ConfigError) as err:
        plan_edit(cfg, cfg, {"dialog.idle_reset_s": -1, "budgets.turn_s": "soon"})
    text = str(err.value)
    assert "dialog.idle_reset_s" in text and "budgets.turn_s" in text
    with pytest.raises(ConfigError, match=r"dialog\.nope: unknown key"):
        plan_edit(cfg, cfg, {"dialog.nope": 1})


def test_csv_export_neutralises_formulas() -> None:
    rec = TurnRecord("s1", 1, 0.0, '=HYPERLINK("x")', 'ok, "quoted"\nline', "ok", "e", {"a": 1})
    rows = list(csv.reader(io.StringIO(to_csv([rec]))))
    assert rows[0][0] == "started_at"
    assert rows[1][7] == '\'=HYPERLINK("x")'
    assert rows[1][8] == 'ok, "quoted"\nline'


# -- first run, login, lockout, CSRF -------------------------------------------------------------


async def test_first_run_login_logout_and_audit(start: Start, http: Any) -> None:
    svc, _ = await start()
    c = http(svc.urls[0])
    page = await c.get("/admin")
    assert page.status_code == 200 and "<html" in page.text
    assert page.headers["cache-control"] == "no-store"
    state = (await c.get("/admin/api/session")).json()
    assert state["setup_needed"] is True and state["local"] is True
    assert state["logged_in"] is False
    # No access before setup; weak passwords refused.
    assert (await c.get("/admin/api/status")).status_code == 401
    r = await c.post("/admin/api/setup", json={"password": "short"})
    assert r.status_code == 400 and r.json()["error"] == "weak_password"
    r = await c.post("/admin/api/setup", json={"password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    csrf = r.json()["csrf"]
    # Setup happens once.
    r = await c.post("/admin/api/setup", json={"password": "another long password"})
    assert r.status_code == 409
    status = (await c.get("/admin/api/status")).json()
    assert status["readiness"]["ready"] is True and status["uptime_s"] >= 0
    assert {m["id"] for m in status["models"]} >= {"vad", "tts_voice"} or status["models"]
    assert status["machine"]["cpus"] >= 1
    # Logout needs the CSRF token too.
    assert (await c.post("/admin/api/logout", json={})).status_code == 403
    r = await c.post("/admin/api/logout", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert (await c.get("/admin/api/status")).status_code == 401
    r = await c.post("/admin/api/login", json={"password": "not the password"})
    assert r.status_code == 401 and r.json()["error"] == "bad_password"
    r = await c.post("/admin/api/login", json={"password": PASSWORD})
    assert r.status_code == 200
    assert (await c.get("/admin/api/status")).status_code == 200
    actions = await audit_actions(c)
    for action in ("setup", "csrf_rejected", "logout", "login_failed", "login"):
        assert action in actions
    # The stored hash is argon2id, never the password.
    stored = svc.ctx.store.admin_hash() if svc.ctx.store else None
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_wrong_passwords_lock_out(start: Start, http: Any) -> None:
    svc, _ = await start(admin={"max_failures": 3, "lockout_s": 120.0})
    c = http(svc.urls[0])
    await setup_admin(c)
    c.cookies.clear()
    codes = []
    for _ in range(3):
        codes.append(
            (await c.post("/admin/api/login", json={"password": "guess guess"})).status_code
        )
    assert codes == [401, 401, 429]
    # Locked out: even the right password is refused now, with a retry hint.
    r = await c.post("/admin/api/login", json={"password": PASSWORD})
    assert r.status_code == 429 and r.json()["retry_after"] > 100
    assert "Try again" in r.json()["message"]


async def test_parallel_wrong_logins_get_only_the_allowed_password_checks(
    start: Start, http: Any
) -> None:
    """60 wrong logins at once from one address: each attempt is reserved before its ~0.1 s
    argon2 check, so only max_failures of them are checked at all; the rest are refused at
    once, and a lockout writes one audit row, not one per request."""
    svc, _ = await start(admin={"max_failures": 4, "lockout_s": 120.0})
    c = http(svc.urls[0])
    await setup_admin(c)
    c.cookies.clear()
    guard = svc.ctx.admin.auth.guard if svc.ctx.admin is not None else None
    assert guard is not None
    checks_before = guard.checks
    codes: list[int] = []

    async def guess() -> None:
        r = await c.post("/admin/api/login", json={"password": "guess guess"})
        codes.append(r.status_code)

    async with trio.open_nursery() as n:
        for _ in range(60):
            n.start_soon(guess)
    assert guard.checks - checks_before <= 4
    assert sorted(set(codes)) == [401, 429] or set(codes) == {429}
    assert codes.count(401) <= 4
    rows = svc.ctx.store.recent_audit(500) if svc.ctx.store is not None else []
    refused = [r for r in rows if r["action"] == "login_refused"]
    assert len(refused) <= 1, refused


async def test_state_changes_need_csrf_json_and_same_origin(start: Start, http: Any) -> None:
    svc, path = await start()
    c = http(svc.urls[0])
    csrf = await setup_admin(c)
    before = path.read_bytes()
    change = {"changes": {"dialog.idle_reset_s": 33}}
    r = await c.post("/admin/api/config", json=change)
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    r = await c.post("/admin/api/config", json=change, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    r = await c.post(
        "/admin/api/config",
        json=change,
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    # A cross-site HTML form cannot send JSON: login via form encoding is refused.
    r = await c.post("/admin/api/login", data={"password": PASSWORD})
    assert r.status_code == 415
    assert path.read_bytes() == before and svc.ctx.cfg.dialog.idle_reset_s == 120.0
    # Another browser's session token does not work with this CSRF token and vice versa.
    c2 = http(svc.urls[0])
    r = await c2.post("/admin/api/login", json={"password": PASSWORD})
    csrf2 = r.json()["csrf"]
    assert csrf2 != csrf
    r = await c2.post("/admin/api/config", json=change, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403


# -- settings ------------------------------------------------------------------------------------


async def test_invalid_config_rejected_old_one_active(start: Start, http: Any) -> None:
    svc, path = await start()
    c = http(svc.urls[0])
    csrf = await setup_admin(c)
    before = path.read_bytes()
    r = await c.post(
        "/admin/api/config",
        json={"changes": {"dialog.idle_reset_s": -5, "budgets.turn_s": "later"}},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["fields"] == ["budgets.turn_s", "dialog.idle_reset_s"]
    assert "dialog.idle_reset_s" in body["message"]
    assert path.read_bytes() == before
    assert svc.ctx.cfg.dialog.idle_reset_s == 120.0 and svc.ctx.cfg.budgets.turn_s == 4.0
    assert "config_rejected" in await audit_actions(c)


async def test_valid_edit_saved_atomically_and_applied_live(
    start: Start, http: Any, llm: ScriptedLLM, connect: Any
) -> None:
    svc, path = await start()
    c = http(svc.urls[0])
    csrf = await setup_admin(c)
    changes = {
        "dialog.idle_reset_s": 45,
        "persona.system_prompt": "You are Zed, the lighthouse keeper.",
        "filter.blocked_terms": ["kraken"],
        "web.port": 18099,
    }
    r = await c.post("/admin/api/config", json={"changes": changes}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    await warmed_with(llm, "You are Zed")  # the persona opens the prompt prefix: re-warmed
    body = r.json()
    assert body["restart"] == ["web.port"]
    assert set(body["applied"]) == {
        "dialog.idle_reset_s",
        "filter.blocked_terms",
        "persona.system_prompt",
    }
    saved = load_config(path)
    assert saved.dialog.idle_reset_s == 45 and saved.web.port == 18099
    assert saved.filter.blocked_terms == ("kraken",)
    assert not list(path.parent.glob(".appliance.toml.*"))  # no temp file left behind
    assert svc.ctx.cfg.web.port == 0  # restart-only: the running listener is unchanged
    status = (await c.get("/admin/api/status")).json()
    assert status["restart_pending"] == ["web.port"]
    async with connect(svc) as ws:
        client: Client = ws
        hello = await client.hello()
        assert hello["config"]["idle_reset_s"] == 45
        await client.ask("Tell me about the tides")
        assert "You are Zed" in llm.requests[-1]["messages"][0]["content"]
        done = await client.ask("Is there a kraken in the harbour?")
        assert done["outcome"] == "blocked"


async def warmed_with(llm: ScriptedLLM, text: str) -> dict[str, Any]:
    """The prompt-prefix warm-up request (prefix alone, one token) that contains `text`, once
    the service has sent it (it re-warms in the background after a live change)."""
    with trio.fail_after(10):
        while True:
            for r in llm.requests:
                msgs = r["messages"]
                if len(msgs) == 1 and r["max_tokens"] == 1 and text in msgs[0]["content"]:
                    return r
            await trio.sleep(0.01)


async def test_faq_edit_reindexes(start: Start, http: Any, llm: ScriptedLLM, connect: Any) -> None:
    svc, _ = await start(knowledge={"prompt_faq_chars": "auto"})
    c = http(svc.urls[0])
    csrf = await setup_admin(c)
    h = {"X-CSRF-Token": csrf}
    faq = (await c.get("/admin/api/faq")).json()
    assert len(faq["entries"]) > 10
    r = await c.post("/admin/api/faq", json={"text": "no questions here"}, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "no_entries"
    new = faq["text"] + "\n## Can I fly a kite on the pier?\nKites are welcome on the north pier.\n"
    r = await c.post("/admin/api/faq", json={"text": new}, headers=h)
    assert r.status_code == 200 and len(r.json()["entries"]) == len(faq["entries"]) + 1
    assert "Kites are welcome" in await trio.Path(faq["path"]).read_text()
    # The prompt prefix holds the FAQ: the new one is warmed at once, before any question.
    warm = await warmed_with(llm, "Kites are welcome on the north pier")
    async with connect(svc) as ws:
        await ws.hello()
        await ws.ask("Can I fly my kite on the pier?")
    # Retrieved for the question (the message before it) and in the prompt prefix.
    messages = llm.requests[-1]["messages"]
    assert "Kites are welcome on the north pier" in messages[-2]["content"]
    assert messages[0] == warm["messages"][0]  # the turn starts with the re-warmed prefix


async def test_settings_need_a_config_file(
    nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM, http: Any
) -> None:
    cfg = parse_config(
        {
            "web": {"port": 0},
            "llm": {"spawn_local": False, "endpoints": [{"name": "s", "url": llm.url}]},
            "store": {"path": str(tmp_path / "x.db")},
            "knowledge": {"semantic": False},
        }
    )
    svc: Service = await nursery.start(
        partial(run_service, cfg, notifier=Notifier.from_env({}), handle_signals=False)
    )
    c = http(svc.urls[0])
    csrf = await setup_admin(c)
    r = await c.post(
        "/admin/api/config",
        json={"changes": {"dialog.idle_reset_s": 40}},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 409 and "--config" in r.json()["message"]


# -- conversations -------------------------------------------------------------------------------


async def test_conversations_search_export_delete(start: Start, http: Any, connect: Any) -> None:
    svc, _ = await start()
    c = http(svc.urls[0])
    csrf = await setup_admin(c)
    async with connect(svc) as ws:
        hello = await ws.hello()
        await ws.ask("Where is the lighthouse lens?")
        await ws.ask("=1+2 is a formula")
    with trio.fail_after(5):
        while (await c.get("/admin/api/turns")).json()["turns"].__len__() < 2:
            await trio.sleep(0.05)
    found = (await c.get("/admin/api/turns", params={"q": "lighthouse"})).json()["turns"]
    assert [t["user_text"] for t in found] == ["Where is the lighthouse lens?"]
    assert found[0]["timings_ms"]["total"] > 0
    r = await c.get("/admin/api/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["user_text"] for row in rows} == {
        "Where is the lighthouse lens?",
        "'=1+2 is a formula",
    }
    assert all(json.loads(row["timings_ms"])["total"] > 0 for row in rows)
    r = await c.get("/admin/api/export", params={"format": "json", "q": "formula"})
    data = r.json()
    assert len(data) == 1 and data[0]["user_text"] == "=1+2 is a formula"
    assert data[0]["session"] == hello["session"]
    r = await c.post(
        "/admin/api/turns/delete",
        json={"session": hello["session"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.json()["deleted"] == 2
    assert (await c.get("/admin/api/turns")).json()["turns"] == []
    actions = await audit_actions(c)
    assert actions.count("export") == 2 and "turns_deleted" in actions


# -- the LAN listener ----------------------------------------------------------------------------


@pytest.mark.skipif(not _has_addr(LAN_ADDR), reason=f"no non-loopback address {LAN_ADDR} here")
async def test_lan_listener_needs_setup_code(
    start: Start, http: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.admin")
    svc, path = await start(admin={"host": LAN_ADDR, "port": 0})
    lan = [u for u in svc.urls if LAN_ADDR in u]
    assert lan and lan[0].startswith("https://"), svc.urls
    # Over TLS (a self-signed certificate made on first run, trusted here as a browser would
    # after checking its fingerprint).
    trust = ssl.create_default_context(cafile=str(path.parent / "admin-tls.crt"))
    c = httpx.AsyncClient(base_url=lan[0], timeout=10, verify=trust)
    try:
        await _lan_setup(c, caplog)
    finally:
        await c.aclose()


async def _lan_setup(c: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    assert (await c.get("/admin")).status_code == 200
    # Only the admin page is on the LAN: no kiosk, no chat API.
    assert (await c.post("/api/chat", json={"text": "hi"})).status_code == 404
    state = (await c.get("/admin/api/session")).json()
    assert state == {**state, "setup_needed": True, "local": False}
    r = await c.post("/admin/api/setup", json={"password": PASSWORD})
    assert r.status_code == 403 and r.json()["error"] == "setup_code"
    r = await c.post(
        "/admin/api/setup", json={"password": PASSWORD, "setup_code": "0000-0000-0000"}
    )
    assert r.status_code == 403
    codes = re.findall(r"setup code (\w{4}-\w{4}-\w{4})", caplog.text)
    assert len(codes) == 1
    csrf = await setup_admin(c, setup_code=codes[0].lower())
    assert csrf
    # Used up: the code cannot create a second account.
    r = await c.post("/admin/api/setup", json={"password": PASSWORD, "setup_code": codes[0]})
    assert r.status_code == 409
