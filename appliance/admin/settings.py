"""Settings edits: dotted-key changes merged into the config, validated as a whole, split into
what applies live and what waits for a restart. Pure functions; saving and applying are done by
the caller (appliance/web/admin.py)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config, ConfigError, config_to_dict, parse_config

__all__ = [
    "RESTART_PREFIXES",
    "Edit",
    "changed_keys",
    "flatten",
    "needs_restart",
    "plan_edit",
]

# Keys read only at start-up (listeners, the LLM pool's endpoints, the audio devices, loaded
# models, the log file): saved at once, active after `systemctl restart appliance`.
RESTART_PREFIXES: tuple[str, ...] = (
    "web.",
    "admin.",
    "audio.",
    "inference.",
    "voice.",
    "llm.endpoints",
    "llm.spawn_local",
    "llm.local_",
    "store.path",
    "knowledge.semantic",
)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists (endpoints, terms) stay whole values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def changed_keys(old: Config, new: Config) -> list[str]:
    a, b = flatten(config_to_dict(old)), flatten(config_to_dict(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def needs_restart(key: str) -> bool:
    return any(key == p.rstrip(".") or key.startswith(p) for p in RESTART_PREFIXES)


def _set(data: dict[str, Any], dotted: str, value: Any, problems: list[str]) -> None:
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            problems.append(f"{'.'.join(parts[: i + 1])}: unknown section")
            return
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        problems.append(f"{dotted}: unknown key")
        return
    node[parts[-1]] = value


@dataclass(frozen=True)
class Edit:
    """A validated edit: `saved` goes to the file, `live` is what runs until a restart (the
    new values, except restart-only keys keep their running values)."""

    saved: Config
    live: Config
    changed: list[str]
    restart: list[str]


def plan_edit(running: Config, saved: Config, changes: Mapping[str, Any]) -> Edit:
    """Apply dotted-key `changes` to `saved` (the file's config). Raises ConfigError naming
    every bad key; nothing is changed then."""
    problems: list[str] = []
    data = copy.deepcopy(config_to_dict(saved))
    for key, value in changes.items():
        if not isinstance(key, str) or not key:
            problems.append(f"{key!r}: not a setting name")
            continue
        _set(data, key, value, problems)
    if problems:
        raise ConfigError(problems, "settings")
    new = parse_config(data, source="settings")
    changed = changed_keys(saved, new)
    restart = [k for k in changed if needs_restart(k)]
    live_data = config_to_dict(new)
    run_flat = flatten(config_to_dict(running))
    for key in flatten(live_data):
        if needs_restart(key):
            _set(live_data, key, run_flat.get(key), [])
    try:
        live = parse_config(live_data, source="settings")
    except ConfigError:
        # A combination of old and new values that does not validate: apply nothing live.
        live = running
        restart = changed
    return Edit(saved=new, live=live, changed=changed, restart=restart)
