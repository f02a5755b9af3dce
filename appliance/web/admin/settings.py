"""Admin routes: read and edit the settings.

An edit goes: validated as a whole (`plan_edit`); paths confined to the state directory (the
directory of the running config file, /var/lib/appliance under ops/install.sh), symlinks
resolved; secrets checked (an `api_key_env` set here must be `APPLIANCE_*` or one the config
file already names, and sending a key to a new URL needs the admin password again, audited);
then built before anything is written (`prepare_live`: the FAQ index and filter; `check_bootable`:
the file as the next start reads it); only then saved atomically and swapped in. Any failure is a
400 with the reason and leaves the file and the running config as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
from quart_trio import QuartTrio

from ...admin.auth import AdminSession, LoginLocked
from ...admin.settings import RESTART_PREFIXES, Edit, flatten, plan_edit
from ...config import (
    ADMIN_PATH_KEYS,
    Config,
    ConfigError,
    config_to_dict,
    confined_path,
    save_config,
)
from ...knowledge import KnowledgeError
from ...service import check_bootable, prepare_live, swap_live
from .common import USER, AdminHttp, err, json_body, log, remote

__all__ = ["KEY_ENV_PREFIX", "key_env_problems", "register", "secret_moves"]

# Environment variables the admin page may name as an endpoint's API key (besides those the
# config file, written on the box, already names): never an arbitrary secret of the process.
KEY_ENV_PREFIX = "APPLIANCE_"


def _flat(cfg: Config) -> dict[str, Any]:
    return flatten(config_to_dict(cfg))


def key_env_problems(saved: Config, new: Config) -> list[str]:
    """`api_key_env` names the admin page may not set."""
    known = {ep.api_key_env for ep in saved.llm.endpoints if ep.api_key_env}
    return [
        f"llm.endpoints[{i}].api_key_env: from the admin page only {KEY_ENV_PREFIX}* variables "
        f"(or ones the config file already names) may hold an API key, not {ep.api_key_env!r}"
        for i, ep in enumerate(new.llm.endpoints)
        if ep.api_key_env
        and ep.api_key_env not in known
        and not ep.api_key_env.startswith(KEY_ENV_PREFIX)
    ]


def secret_moves(saved: Config, new: Config) -> list[str]:
    """Each endpoint of `new` that would send an API key somewhere it was not sent before."""
    before = {(ep.url.rstrip("/"), ep.api_key_env) for ep in saved.llm.endpoints if ep.api_key_env}
    return [
        f"{ep.name}: the key in {ep.api_key_env} goes to {urlsplit(ep.url).netloc or ep.url}"
        for ep in new.llm.endpoints
        if ep.api_key_env and (ep.url.rstrip("/"), ep.api_key_env) not in before
    ]


def _confine(
    changes: Mapping[str, Any], saved: Config, state_dir: Path
) -> tuple[dict[str, Any], list[str]]:
    """Changes as dotted keys, path values made absolute inside the state directory."""
    flat = flatten(changes)
    was = _flat(saved)
    problems: list[str] = []
    for key in ADMIN_PATH_KEYS:
        value = flat.get(key)
        if key not in flat or not isinstance(value, str) or value == was.get(key):
            continue  # absent, unchanged, or a type error plan_edit names
        flat[key], problem = confined_path(key, value, state_dir)
        if problem:
            problems.append(problem)
    return flat, problems


def _recheck(edit: Edit, saved: Config, state_dir: Path) -> list[str]:
    """Every changed path of the result, whatever form the change came in, once more."""
    new, was = _flat(edit.saved), _flat(saved)
    problems = []
    for key in ADMIN_PATH_KEYS:
        value = new.get(key)
        if isinstance(value, str) and value != was.get(key):
            absolute, problem = confined_path(key, value, state_dir)
            if problem is None and absolute != value:
                problem = f"{key}: give the full path ({absolute})"
            if problem:
                problems.append(problem)
    return problems


def register(app: QuartTrio, h: AdminHttp) -> None:
    ctx, st = h.ctx, h.st

    async def rejected(s: AdminSession, problems: list[str]) -> tuple[dict[str, Any], int]:
        fields = sorted({p.split(":", 1)[0] for p in problems})
        await h.audit(s.user, "config_rejected", ", ".join(fields))
        return err(
            "invalid_config",
            "Not saved: " + "; ".join(problems),
            400,
            problems=problems,
            fields=fields,
        )

    async def reauthenticated(
        s: AdminSession, body: Mapping[str, Any], moves: list[str]
    ) -> tuple[dict[str, Any], int] | None:
        """None when the request carries the right admin password; else the refusal."""
        password = body.get("password")
        stored = await trio.to_thread.run_sync(h.store().admin_hash, USER)
        if not isinstance(password, str) or not password or stored is None:
            await h.audit(s.user, "secret_move_refused", "no password; " + "; ".join(moves))
            return err(
                "reauth_required",
                "This change sends an API key to a new address: enter your admin password "
                "to confirm it. " + "; ".join(moves),
                401,
                moves=moves,
            )
        try:
            # Counted like a login: a stolen session cannot guess the password through here.
            async with st.auth.guard.attempt(remote()) as attempt:
                if len(password) <= 1024:
                    await attempt.verify(stored, password)
        except LoginLocked as exc:
            return err("locked_out", str(exc), 429, retry_after=exc.retry_after)
        if not attempt.ok:
            await h.audit(s.user, "secret_move_refused", "wrong password; " + "; ".join(moves))
            return err("bad_password", "The admin password is wrong; nothing was saved.", 401)
        return None

    @app.get("/admin/api/config")
    @h.guarded(csrf=False)
    async def admin_config(s: AdminSession) -> dict[str, Any]:
        return {
            "config": config_to_dict(st.saved),
            "running": config_to_dict(ctx.cfg),
            "path": str(ctx.config_path) if ctx.config_path else None,
            "state_dir": str(ctx.config_path.parent) if ctx.config_path else None,
            "restart_prefixes": list(RESTART_PREFIXES),
            "restart_pending": st.restart_pending,
        }

    @app.post("/admin/api/config")
    @h.guarded(csrf=True)
    async def admin_config_save(s: AdminSession) -> Any:
        body = await json_body()
        changes = body.get("changes") if body else None
        if body is None or not isinstance(changes, dict) or not changes:
            return err("bad_request", "Send {'changes': {'section.key': value, ...}}.", 400)
        if ctx.config_path is None:
            return err(
                "no_config_file",
                "The service runs on built-in defaults; start it with --config FILE to edit.",
                409,
            )
        state_dir = ctx.config_path.parent
        async with ctx.settings_lock:  # one edit at a time: each is planned on the last
            changes, problems = _confine(changes, st.saved, state_dir)
            if problems:
                return await rejected(s, problems)
            try:
                edit = await trio.to_thread.run_sync(plan_edit, ctx.cfg, st.saved, changes)
            except ConfigError as exc:
                return await rejected(s, exc.problems)
            problems = _recheck(edit, st.saved, state_dir) + key_env_problems(st.saved, edit.saved)
            if problems:
                return await rejected(s, problems)
            if not edit.changed:
                return {"ok": True, "changed": [], "restart": [], "applied": []}
            moves = secret_moves(st.saved, edit.saved)
            if moves:
                refusal = await reauthenticated(s, body, moves)
                if refusal is not None:
                    return refusal
            # Built before it is saved: a config that cannot run never reaches the disk.
            try:
                pieces = await prepare_live(ctx, edit.live)
                await trio.to_thread.run_sync(check_bootable, edit.saved, state_dir)
            except KnowledgeError as exc:
                return await rejected(s, [f"knowledge.faq: {exc}"])
            except ConfigError as exc:
                return await rejected(s, exc.problems)
            except (ValueError, OSError) as exc:
                return await rejected(s, [f"settings: cannot be applied: {exc}"])
            try:
                await trio.to_thread.run_sync(save_config, edit.saved, ctx.config_path)
            except OSError as exc:
                await h.audit(s.user, "config_save_failed", str(exc))
                return err("save_failed", f"Could not write the config file: {exc}", 500)
            swap_live(ctx, edit.live, pieces)
            st.saved = edit.saved
            st.restart_pending = sorted(set(st.restart_pending) | set(edit.restart))
        applied = [k for k in edit.changed if k not in edit.restart]
        await h.audit(s.user, "config_saved", ", ".join(edit.changed))
        for move in moves:
            await h.audit(s.user, "secret_moved", move + " (re-authenticated)")
        log.info("settings saved", extra={"changed": edit.changed, "restart": edit.restart})
        return {"ok": True, "changed": edit.changed, "applied": applied, "restart": edit.restart}
