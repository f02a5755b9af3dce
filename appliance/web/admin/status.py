"""Admin routes: the status page (readiness, models, audio, recent turns) and the audit log."""

from __future__ import annotations

import os
from typing import Any

import trio
from quart_trio import QuartTrio

from ...admin import sysinfo
from ...admin.auth import AdminSession
from ...admin.conversations import turn_dict
from ...service import knowledge_note
from .common import AdminHttp

__all__ = ["register"]


def register(app: QuartTrio, h: AdminHttp) -> None:
    ctx, st = h.ctx, h.st

    @app.get("/admin/api/status")
    @h.guarded(csrf=False)
    async def admin_status(s: AdminSession) -> dict[str, Any]:
        cfg = ctx.cfg
        store = h.store()
        recent = await trio.to_thread.run_sync(store.recent_turns, 10)
        count = await trio.to_thread.run_sync(store.count_turns)
        models = await trio.to_thread.run_sync(sysinfo.models)
        audio = await trio.to_thread.run_sync(sysinfo.audio_devices)
        machine = await trio.to_thread.run_sync(sysinfo.machine)
        keys = {
            ep.name: (bool(os.environ.get(ep.api_key_env)) if ep.api_key_env else None)
            for ep in cfg.llm.endpoints
        }
        return {
            "uptime_s": round(trio.current_time() - ctx.readiness.started_at, 1),
            "readiness": ctx.readiness.snapshot(ctx.pool, ctx.runner.knowledge),
            "api_key_set": keys,
            "models": models,
            "providers": sysinfo.providers(cfg.inference.providers),
            "audio": {**audio, "enabled": cfg.audio.enabled},
            # The box's own microphone and speaker while they run (None: not running).
            "local_voice": ctx.local_voice_status() if ctx.local_voice_status else None,
            "machine": machine,
            "loop_lag_s": round(ctx.lag.last, 4),
            "ws_open": ctx.ws_open,
            "sessions": len(ctx.sessions),
            "knowledge": {
                "faq": cfg.knowledge.faq,
                "entries": len(ctx.runner.knowledge),
                "problem": knowledge_note(ctx.runner.knowledge),
            },
            "turns_logged": count,
            "recent_turns": [turn_dict(r) for r in recent],
            "restart_pending": st.restart_pending,
            # The LAN admin listener's certificate, to compare with what the browser shows.
            "admin_tls": ctx.admin_tls,
        }

    @app.get("/admin/api/audit")
    @h.guarded(csrf=False)
    async def admin_audit(s: AdminSession) -> dict[str, Any]:
        return {"entries": await trio.to_thread.run_sync(h.store().recent_audit, 200)}
