"""Admin routes: read and edit the site FAQ (parsed and indexed before it is saved)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from quart_trio import QuartTrio

from ...admin.auth import AdminSession
from ...config import confined_path, write_atomic
from ...knowledge import KnowledgeBase, parse_faq
from ...knowledge.grounding import prepare
from ...service import knowledge_note, warm_prefix_soon
from .common import AdminHttp, err, json_body

__all__ = ["register"]

_MAX_FAQ_BYTES = 512 * 1024


def register(app: QuartTrio, h: AdminHttp) -> None:
    ctx = h.ctx

    @app.get("/admin/api/faq")
    @h.guarded(csrf=False)
    async def admin_faq(s: AdminSession) -> Any:
        path = Path(ctx.cfg.knowledge.faq)
        problem = knowledge_note(ctx.runner.knowledge)
        try:
            text = await trio.to_thread.run_sync(path.read_text, "utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            # A missing or broken FAQ (the service runs on its fallback): an empty editor to
            # write a new one in, and the reason, rather than an error page.
            text = ""
            problem = problem or f"{path}: {getattr(exc, 'strerror', None) or exc}"
        kb = ctx.runner.knowledge
        return {
            "path": str(path),
            "text": text,
            "entries": [{"question": e.question, "answer": e.answer} for e in kb.entries],
            "warnings": list(kb.warnings),
            "problem": problem,
        }

    @app.post("/admin/api/faq")
    @h.guarded(csrf=True)
    async def admin_faq_save(s: AdminSession) -> Any:
        body = await json_body()
        text = body.get("text") if body else None
        if not isinstance(text, str):
            return err("bad_request", "Send {'text': markdown}.", 400)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") in the JSON
            return err("bad_request", "The FAQ text is not valid Unicode.", 400)
        if len(data) > _MAX_FAQ_BYTES:
            return err("too_large", "The FAQ is larger than 512 KB.", 400)
        if ctx.config_path is None:
            return err(
                "no_config_file",
                "The service runs on built-in defaults (the shipped sample FAQ); start it with "
                "--config FILE and an FAQ file next to it to edit.",
                409,
            )
        # Only a file inside the state directory is ever written (not the shipped sample, not
        # whatever else the config file may name).
        _, problem = confined_path("knowledge.faq", ctx.cfg.knowledge.faq, ctx.config_path.parent)
        if problem is not None:
            return err(
                "faq_read_only",
                f"This FAQ file cannot be edited here ({problem}). Copy it into "
                f"{ctx.config_path.parent} and set knowledge.faq to the copy.",
                409,
            )
        entries, warnings = parse_faq(text)
        if not entries:
            return err(
                "no_entries", "No questions found: each question is a line starting '## '.", 400
            )
        embedder = ctx.runner.knowledge.embedder

        def build() -> KnowledgeBase:
            new = KnowledgeBase(entries, warnings=warnings, embedder=embedder)
            prepare(new)  # the answer policy's caches now, not on the next question
            return new

        kb = await trio.to_thread.run_sync(build)
        path = Path(ctx.cfg.knowledge.faq)
        async with ctx.settings_lock:
            if Path(ctx.cfg.knowledge.faq) != path:
                return err("conflict", "The FAQ file was changed meanwhile; reload.", 409)
            try:
                await trio.to_thread.run_sync(write_atomic, path, data)
            except OSError as exc:
                return err("save_failed", f"Could not write {path}: {exc}", 500)
            ctx.runner.knowledge = kb  # running turns keep the index they read
            warm_prefix_soon(ctx)  # the prompt prefix holds the FAQ
        await h.audit(s.user, "faq_saved", f"{len(entries)} entries")
        return {
            "ok": True,
            "entries": [{"question": e.question, "answer": e.answer} for e in entries],
            "warnings": warnings,
        }
