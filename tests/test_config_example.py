"""config.example.toml documents every key of appliance.config, with its default value.

A new config field without a line in the example, a key the code no longer has, or a default
changed in one place only fails here.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from appliance.config import Config, config_to_dict, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config.example.toml"

# Keys whose value in the example is deliberately not the default (marked "example" there).
EXAMPLE_VALUES = {"store.path", "persona.system_prompt"}
# Paths the example writes relative to itself: the same file as the default, spelled differently.
SAME_FILE = {"knowledge.faq"}


def _item_type(tp: Any) -> Any:
    """The dataclass held by a `tuple[X, ...]` field, else None."""
    if typing.get_origin(tp) is tuple:
        (item, _ellipsis) = typing.get_args(tp)
        if dataclasses.is_dataclass(item):
            return item
    return None


def _key_problems(cls: Any, table: Any, prefix: str) -> list[str]:
    """Fields of `cls` missing from `table`, keys of `table` that `cls` lacks; recursively."""
    if not isinstance(table, dict):
        return [f"{prefix}: expected a table, got {type(table).__name__}"]
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out = [f"{prefix}{k}: not a field of {cls.__name__}" for k in sorted(set(table) - names)]
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name not in table:
            out.append(f"{key}: not documented in config.example.toml")
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _key_problems(tp, table[f.name], key + ".")
        elif (item := _item_type(tp)) is not None:
            items = table[f.name]
            if not isinstance(items, list) or not items:
                out.append(f"{key}: expected at least one [[{key}]] table")
                continue
            for i, entry in enumerate(items):
                out += _key_problems(item, entry, f"{key}[{i}].")
    return out


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_example_validates() -> None:
    cfg = load_config(EXAMPLE)  # raises ConfigError naming every bad key (unknown keys too)
    assert isinstance(cfg, Config)


def test_example_documents_every_key_and_only_known_keys() -> None:
    data = tomllib.loads(EXAMPLE.read_text("utf-8"))
    problems = _key_problems(Config, data, "")
    assert not problems, "\n".join(problems)


def test_example_values_are_the_defaults() -> None:
    example = _flat(config_to_dict(load_config(EXAMPLE)))
    default = _flat(config_to_dict(parse_config({})))
    assert example.keys() == default.keys()
    for key in SAME_FILE:
        assert Path(example[key]).read_bytes() == Path(default[key]).read_bytes(), key
    differ = sorted(
        f"{k}: example {example[k]!r}, default {default[k]!r}"
        for k in example.keys() - EXAMPLE_VALUES - SAME_FILE
        if example[k] != default[k]
    )
    assert not differ, "\n".join(differ)
    for key in EXAMPLE_VALUES:
        assert example[key] != default[key], f"{key}: now the default, drop it from EXAMPLE_VALUES"


def test_checker_catches_drift() -> None:
    """The key check itself: a missing field and a stray key are both named."""
    data = tomllib.loads(EXAMPLE.read_text("utf-8"))
    del data["voice"]["echo_gate"]
    del data["llm"]["endpoints"][0]["vision"]
    data["admin"]["colour"] = "red"
    problems = _key_problems(Config, data, "")
    assert sorted(problems) == [
        "admin.colour: not a field of AdminConfig",
        "llm.endpoints[0].vision: not documented in config.example.toml",
        "voice.echo_gate: not documented in config.example.toml",
    ]
