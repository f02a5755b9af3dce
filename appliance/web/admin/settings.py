"""Admin routes: read and edit the settings (validated, saved atomically, applied live where
the key allows; restart-only keys are reported as pending)."""

from __future__ import annotations

from typing import Any

import trio
from quart_trio import QuartTrio

from ...admin.auth import AdminSession
from ...admin.settings import RESTART_PREFIXES, plan_edit
from ...config import ConfigError, config_to_dict, save_config
from ...service import apply_live
from .common import AdminHttp, err, json_body, log

__all__ = ["register"]


def register(app: QuartTrio, h: AdminHttp) -> None:
    ctx, st = h.ctx, h.st

    @app.get("/admin/api/config")
    @h.guarded(csrf=False)
    async def admin_config(s: AdminSession) -> dict[str, Any]:
        return {
            "config": config_to_dict(st.saved),
            "running": config_to_dict(ctx.cfg),
            "path": str(ctx.config_path) if ctx.config_path else None,
            "restart_prefixes": list(RESTART_PREFIXES),
            "restart_pending": st.restart_pending,
        }

    @app.post("/admin/api/config")
    @h.guarded(csrf=True)
    async def admin_config_save(s: AdminSession) -> Any:
        body = await json_body()
        changes = body.get("changes") if body else None
        if not isinstance(changes, dict) or not changes:
            return err("bad_request", "Send {'changes': {'section.key': value, ...}}.", 400)
        if ctx.config_path is None:
            return err(
                "no_config_file",
                "The service runs on built-in defaults; start it with --config FILE to edit.",
                409,
            )
        try:
            edit = await trio.to_thread.run_sync(plan_edit, ctx.cfg, st.saved, changes)
        except ConfigError as exc:
            fields = sorted({p.split(":", 1)[0] for p in exc.problems})
            await h.audit(s.user, "config_rejected", ", ".join(fields))
            return err(
                "invalid_config",
                "Not saved: " + "; ".join(exc.problems),
                400,
                problems=exc.problems,
                fields=fields,
            )
        if not edit.changed:
            return {"ok": True, "changed": [], "restart": [], "applied": []}
        try:
            await trio.to_thread.run_sync(save_config, edit.saved, ctx.config_path)
        except OSError as exc:
            await h.audit(s.user, "config_save_failed", str(exc))
            return err("save_failed", f"Could not write the config file: {exc}", 500)
        await apply_live(ctx, edit.live)
        st.saved = edit.saved
        st.restart_pending = sorted(set(st.restart_pending) | set(edit.restart))
        applied = [k for k in edit.changed if k not in edit.restart]
        await h.audit(s.user, "config_saved", ", ".join(edit.changed))
        log.info("settings saved", extra={"changed": edit.changed, "restart": edit.restart})
        return {"ok": True, "changed": edit.changed, "applied": applied, "restart": edit.restart}
