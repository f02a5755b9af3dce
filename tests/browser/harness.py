"""Helpers for the browser tests: the service and the scripted LLM in background threads (each
its own trio.run), Chromium's location and flags, screenshots."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import Page

from appliance.config import Config
from appliance.supervisor import Service, run_service
from appliance.systemd import Notifier

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


class TrioThread:
    """Run `main(task_status)` under trio.run in a daemon thread until `stop()` is called."""

    def __init__(self, main: Callable[..., Any]) -> None:
        self._main = main
        self._started = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def body() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    self._value = await nursery.start(self._main)
                    self._started.set()

        try:
            trio.run(body)
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            self._started.set()

    def start(self, timeout: float = 60.0) -> Any:
        self._thread.start()
        if not self._started.wait(timeout) or self._error is not None:
            raise RuntimeError(f"background service did not start: {self._error!r}")
        return self._value

    def call_soon(self, fn: Callable[[], Any]) -> None:
        assert self._token is not None
        self._token.run_sync_soon(fn)

    def join(self, timeout: float = 15.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "background service did not stop"

    def cancel(self) -> None:
        if self._cancel is not None and self._thread.is_alive():
            self.call_soon(self._cancel.cancel)
        self.join()


class Kiosk:
    """The appliance on a fixed loopback port, restartable (same port, same files)."""

    def __init__(self, cfg: Config, config_path: Path) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.thread: TrioThread | None = None
        self.svc: Service | None = None

    def start(self) -> None:
        cfg = self.cfg

        async def main(task_status: trio.TaskStatus[Service]) -> None:
            await run_service(
                cfg,
                notifier=Notifier.from_env({}),
                handle_signals=False,
                config_path=self.config_path,
                task_status=task_status,
            )

        self.thread = TrioThread(main)
        self.svc = self.thread.start()
        port = int(self.svc.urls[0].rsplit(":", 1)[1])
        # Restarts reuse the port, as a restarted appliance would.
        self.cfg = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, port=port))

    def stop(self) -> None:
        if self.thread is not None and self.svc is not None:
            svc = self.svc
            self.thread.call_soon(svc.stop)
            self.thread.join()
        self.thread = self.svc = None

    @property
    def url(self) -> str:
        assert self.svc is not None
        return self.svc.urls[0]

    @property
    def ctx(self) -> Any:
        assert self.svc is not None
        return self.svc.ctx


def screenshot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
