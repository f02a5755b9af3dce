"""No input gives a 5xx: deeply nested JSON and garbage bodies to every HTTP route.

The real service on loopback (started from a config file, so the settings routes save for
real), real HTTP; the routes are read from the app's own URL map, so a route added later is
fuzzed too. Anonymous and logged in (with the CSRF token), so the handlers behind the guard
see the garbage as well.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import start_from_file

from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.supervisor import Service
from appliance.web.app import create_app

PASSWORD = "correct horse battery"
DEEP = 100_000

Start = Callable[[], Awaitable[Service]]


@pytest.fixture
def start(nursery: trio.Nursery, tmp_path: Path, llm: ScriptedLLM) -> Start:
    async def _start() -> Service:
        web = {"rate_per_s": 10000.0, "rate_burst": 10000}
        svc, _ = await start_from_file(nursery, tmp_path, llm.url, web=web)
        return svc

    return _start


@pytest.fixture
async def client() -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []

    def make(base: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(base_url=base, timeout=30)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.aclose()


def nested_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def routes(svc: Service) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route of the kiosk app (admin included)."""
    out = []
    for rule in create_app(svc.ctx).url_map.iter_rules():
        if getattr(rule, "websocket", False):
            continue
        path = rule.rule.replace("<path:name>", "..%2f..%2fetc%2fpasswd")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return sorted(set(out))


def garbage_bodies(seed: int) -> list[tuple[bytes, str | None]]:
    rng = random.Random(seed)
    deep_value = json.dumps({"changes": {"persona.system_prompt": None}}).replace(
        "null", "[" * 900 + "]" * 900
    )
    bodies: list[tuple[bytes, str | None]] = [
        (nested_array(DEEP), "application/json"),
        (nested_object(DEEP), "application/json"),
        (b'{"text": ' + nested_array(DEEP) + b"}", "application/json"),
        (deep_value.encode(), "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b'"just a string"', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"text": NaN, "password": Infinity, "changes": {"budgets.turn_s": NaN}}', None),
        (b'{"password": 1e999, "text": 1e999, "changes": {"dialog.idle_reset_s": 1e999}}', None),
        (b'{"changes": {"": 1, "a..b": 2, "web": {"port": 1}}, "all": "yes"}', None),
        (b'{"session": ["x"], "text": {"a": 1}, "image": 5, "current": 1, "new": []}', None),
        (b'{"text": "' + b"A" * 1_500_000 + b'"}', "application/json"),
        (bytes(rng.getrandbits(8) for _ in range(4096)), "application/octet-stream"),
        (bytes(rng.getrandbits(8) for _ in range(4096)), "application/json"),
        (b"password=x&text=y", "application/x-www-form-urlencoded"),
        (
            b'{"text": "\\ud800", "password": "\\udfff\\ud800", "current": "\\ud800", '
            b'"new": "\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800", "session": "\\ud800", '
            b'"changes": {"persona.system_prompt": "\\ud800", "knowledge.faq": "\\ud800.md"}}',
            None,
        ),
        (b'{"changes": {"knowledge.faq": "/proc/self/environ"}}', None),
        (b'{"changes": {"knowledge": {"faq": "../../etc/passwd"}}}', None),
    ]
    return [(b, ct or "application/json") for b, ct in bodies]


QUERIES = [
    "",
    "?days=nan&limit=-1&q=%00",
    "?days=1e999&limit=99999999999999999999999&format=csv",
    "?days=-inf&limit=abc&format=xml&q=" + "%ff" * 300,
]


async def fuzz(c: httpx.AsyncClient, svc: Service, headers: dict[str, str]) -> list[str]:
    bad: list[str] = []
    for method, path in routes(svc):
        if method == "GET":
            for q in QUERIES:
                r = await c.get(path + q, headers=headers)
                if r.status_code >= 500:
                    bad.append(f"GET {path}{q[:40]} -> {r.status_code}")
            continue
        for i, (body, ctype) in enumerate(garbage_bodies(len(path))):
            r = await c.request(
                method, path, content=body, headers={**headers, "Content-Type": ctype}
            )
            if r.status_code >= 500:
                bad.append(f"{method} {path} body#{i} -> {r.status_code} {r.text[:80]}")
    return bad


async def test_deeply_nested_json_is_a_clear_400(start: Start, client: Any) -> None:
    svc = await start()
    c = client(svc.urls[0])
    for body in (nested_array(DEEP), nested_object(DEEP)):
        r = await c.post("/api/chat", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "bad_json" and "nested" in r.json()["message"]
        r = await c.post(
            "/admin/api/login", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "bad_json" and "nested" in r.json()["message"]
    # The service is fine afterwards.
    assert (await c.get("/healthz")).status_code == 200


async def test_garbage_to_every_route_never_gives_5xx(start: Start, client: Any) -> None:
    svc = await start()
    c = client(svc.urls[0])
    assert len(routes(svc)) >= 15
    # Anonymous first (setup not done yet, then done), then logged in with the CSRF token.
    bad = await fuzz(c, svc, {})
    r = await c.post("/admin/api/setup", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]
    bad += await fuzz(c, svc, {"X-CSRF-Token": csrf})
    c.cookies.clear()
    bad += await fuzz(c, svc, {})
    assert not bad, "\n".join(bad)
    assert (await c.get("/healthz")).status_code == 200


async def test_lone_surrogates_are_refused_not_crashing(
    start: Start, client: Any, connect: Any
) -> None:
    """JSON may carry "\\ud800", which no later stage can encode (the LLM request, the store):
    refused at the door, over SSE and /ws alike; the service lives on."""
    svc = await start()
    c = client(svc.urls[0])
    r = await c.post(
        "/api/chat", content=b'{"text": "hi \\ud800"}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_field", r.text
    async with connect(svc) as ws:
        await ws.hello()
        await ws.send('{"type": "text", "text": "hi \\ud800"}')
        err = await ws.until("error")
        assert err["code"] == "bad_field" and "Unicode" in err["message"]
        done = await ws.ask("Still there?")
        assert done["outcome"] == "ok"
    assert (await c.get("/healthz")).status_code == 200
