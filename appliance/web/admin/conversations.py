"""Admin routes: the conversation log (search, export, delete, retention purge)."""

from __future__ import annotations

import time
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from ...admin.auth import AdminSession
from ...admin.conversations import to_csv, to_json, turn_dict
from .common import AdminHttp, err, json_body

__all__ = ["register"]


def register(app: QuartTrio, h: AdminHttp) -> None:
    ctx = h.ctx

    def _query_args() -> tuple[str, float | None, int]:
        q = request.args.get("q", "")[:200]
        days = request.args.get("days", type=float)
        since = time.time() - days * 86400 if days and days > 0 else None
        limit = max(1, min(request.args.get("limit", 200, type=int) or 200, 100_000))
        return q, since, limit

    @app.get("/admin/api/turns")
    @h.guarded(csrf=False)
    async def admin_turns(s: AdminSession) -> dict[str, Any]:
        q, since, limit = _query_args()
        recs = await trio.to_thread.run_sync(h.store().turns_between, q, since, limit)
        return {
            "turns": [turn_dict(r) for r in recs],
            "retention_days": ctx.cfg.store.retention_days,
        }

    @app.get("/admin/api/export")
    @h.guarded(csrf=False)
    async def admin_export(s: AdminSession) -> Any:
        fmt = request.args.get("format", "json")
        if fmt not in ("csv", "json"):
            return err("bad_request", "format is csv or json", 400)
        q, since, _ = _query_args()
        recs = await trio.to_thread.run_sync(h.store().turns_between, q, since, 100_000)
        body = await trio.to_thread.run_sync(to_csv if fmt == "csv" else to_json, recs)
        await h.audit(s.user, "export", f"{fmt}, {len(recs)} turns, q={q!r}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        mime = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        return Response(
            body,
            content_type=mime,
            headers={"Content-Disposition": f'attachment; filename="conversations-{stamp}.{fmt}"'},
        )

    @app.post("/admin/api/turns/delete")
    @h.guarded(csrf=True)
    async def admin_turns_delete(s: AdminSession) -> Any:
        body = await json_body() or {}
        sess = body.get("session")
        if body.get("all") is True:
            n = await trio.to_thread.run_sync(h.store().delete_turns, None)
            detail = f"all ({n} turns)"
        elif isinstance(sess, str) and sess:
            n = await trio.to_thread.run_sync(h.store().delete_turns, sess)
            detail = f"session {sess} ({n} turns)"
        else:
            return err("bad_request", "Send {'session': id} or {'all': true}.", 400)
        await h.audit(s.user, "turns_deleted", detail)
        return {"ok": True, "deleted": n}

    @app.post("/admin/api/turns/purge")
    @h.guarded(csrf=True)
    async def admin_turns_purge(s: AdminSession) -> Any:
        days = ctx.cfg.store.retention_days
        n = await trio.to_thread.run_sync(h.store().purge_older_than, days)
        await h.audit(s.user, "retention_purge", f"{n} turns older than {days} days")
        return {"ok": True, "deleted": n}
