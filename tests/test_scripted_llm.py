"""The scripted OpenAI-compatible server: wire format, overrides, timing, load, CLI entry."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio
from trio.testing import MockClock

from appliance.fakes.scripted_llm import Script, ScriptedLLM, reply_for, script_for


def chat(model: str = "m", stream: bool = True, content: object = "hi") -> dict[str, object]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}


def sse_data(body: str) -> list[str]:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


async def test_models_and_unknown_paths(server: ScriptedLLM, client: httpx.AsyncClient) -> None:
    r = await client.get(server.url + "/models")
    assert r.status_code == 200
    assert r.json()["data"][0]["object"] == "model"
    assert (await client.get(server.url + "/nope")).status_code == 404
    assert (await client.get(server.url + "/chat/completions")).status_code == 405


async def test_stream_is_openai_chunk_shaped(
    server: ScriptedLLM, client: httpx.AsyncClient
) -> None:
    r = await client.post(server.url + "/chat/completions", json=chat("tiny"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "tiny" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello from the scripted model. "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert server.served[-1].outcome == "done"


async def test_non_streamed_completion(server: ScriptedLLM, client: httpx.AsyncClient) -> None:
    server.script = Script(reply="We open at nine thirty.")
    r = await client.post(server.url + "/chat/completions", json=chat(stream=False))
    obj = r.json()
    assert obj["object"] == "chat.completion"
    assert obj["choices"][0]["message"] == {
        "role": "assistant",
        "content": "We open at nine thirty. ",
    }


async def test_requests_are_recorded_and_echo_reads_vision_parts(
    server: ScriptedLLM, client: httpx.AsyncClient
) -> None:
    parts = [
        {"type": "text", "text": "ECHO what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    r = await client.post(server.url + "/chat/completions", json=chat(stream=False, content=parts))
    assert r.json()["choices"][0]["message"]["content"] == "ECHO what is this? "
    assert server.requests[-1]["messages"][0]["content"][1]["type"] == "image_url"


@pytest.mark.parametrize(
    ("model", "status"),
    [("script:http_429", 429), ("script:http_500", 500), ("script:http_400", 400)],
)
async def test_error_modes(
    server: ScriptedLLM, client: httpx.AsyncClient, model: str, status: int
) -> None:
    r = await client.post(server.url + "/chat/completions", json=chat(model))
    assert r.status_code == status
    assert "error" in r.json()
    assert server.served[-1].outcome == f"status:{status}"


async def test_bad_requests_get_400(server: ScriptedLLM, client: httpx.AsyncClient) -> None:
    r = await client.post(server.url + "/chat/completions", content=b"{not json")
    assert r.status_code == 400
    r = await client.post(server.url + "/chat/completions", json=chat("script:bogus"))
    assert r.status_code == 400 and "bogus" in r.text
    assert server.requests == []


async def test_api_key_required_when_configured(
    client: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    s = ScriptedLLM(api_key="k")
    await nursery.start(s.serve)
    url = s.url + "/chat/completions"
    assert (await client.post(url, json=chat(stream=False))).status_code == 401
    r = await client.post(url, json=chat(stream=False), headers={"Authorization": "Bearer k"})
    assert r.status_code == 200


async def test_timing_follows_the_script(
    server: ScriptedLLM, client: httpx.AsyncClient, mock_clock: MockClock
) -> None:
    server.script = Script(first_token_s=2.0, token_interval_s=0.5)
    arrivals: list[float] = []
    t0 = trio.current_time()
    req = chat()
    async with client.stream("POST", server.url + "/chat/completions", json=req) as r:
        async for line in r.aiter_lines():
            if '"content": "' in line:
                arrivals.append(trio.current_time() - t0)
    assert len(arrivals) == 5
    assert 2.0 <= arrivals[0] < 2.1
    assert all(0.5 <= b - a < 0.6 for a, b in itertools.pairwise(arrivals))


def test_script_override_parsing() -> None:
    base = Script(reply="x", token_interval_s=0.1)
    assert script_for(base, "smollm2") is base
    s = script_for(base, "script:slow_first:2.5")
    assert (s.mode, s.first_token_s, s.reply, s.token_interval_s) == ("slow_first", 2.5, "x", 0.1)
    assert script_for(base, "script:stall:3").stall_after_tokens == 3
    assert script_for(base, "script:http_500").mode == "http_500"
    with pytest.raises(ValueError):
        script_for(base, "script:nope")


def test_echo_only_looks_at_the_last_user_message() -> None:
    s = Script(reply="default")
    old = [{"role": "user", "content": "ECHO old"}, {"role": "assistant", "content": "a"}]
    assert reply_for(s, [*old, {"role": "user", "content": "new"}]) == "default"
    assert reply_for(s, [*old, {"role": "user", "content": "ECHO new"}]) == "ECHO new"
    assert reply_for(s, "not a list") == "default"


async def test_many_concurrent_streams(server: ScriptedLLM) -> None:
    """Hundreds of simultaneous streams on one server (the benchmark goes to 500+)."""
    n = 300
    server.script = Script(first_token_s=0.05)
    done: list[int] = []
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=30) as c:

        async def one() -> None:
            r = await c.post(server.url + "/chat/completions", json=chat())
            done.append(len(sse_data(r.text)))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one)
    assert done == [8] * n  # role chunk, 5 words, stop chunk, [DONE]
    assert [s.outcome for s in server.served] == ["done"] * n


async def test_cli_prints_its_url_and_serves() -> None:
    cmd = [sys.executable, "-m", "appliance.fakes.scripted_llm", "--port", "0"]
    cmd += ["--reply", "Hi there", "--first-token-ms", "5"]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            partial(trio.run_process, cmd, stdout=subprocess.PIPE, check=False)
        )
        try:
            assert proc.stdout is not None
            with trio.fail_after(20):
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    assert chunk, "server exited before printing its URL"
                    line += chunk
            url = line.decode().strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
            async with httpx.AsyncClient(timeout=10) as c:
                r = await c.post(url + "/chat/completions", json=chat(stream=False))
            assert r.json()["choices"][0]["message"]["content"] == "Hi there "
        finally:
            proc.terminate()
