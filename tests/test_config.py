import dataclasses
import json
import math
import typing
from pathlib import Path

import pytest

from appliance.config import (
    Config,
    ConfigError,
    confined_path,
    default_faq_path,
    load_config,
    parse_config,
    remove_stale_temps,
    save_config,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_valid() -> None:
    cfg = parse_config({})
    assert cfg.web.port == 8080
    assert cfg.llm.endpoints[0].url.endswith("/v1")
    assert cfg.audio.enabled == "auto"


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "config.example.toml")
    assert cfg.llm.spawn_local is True
    assert Path(cfg.knowledge.faq).is_file()
    assert Path(cfg.store.path).is_absolute()


def test_required_keys_by_name() -> None:
    cfg = parse_config(
        {
            "web": {"host": "0.0.0.0", "port": 9000},
            "llm": {
                "spawn_local": False,
                "endpoints": [
                    {
                        "name": "a",
                        "url": "http://x/v1",
                        "model": "m",
                        "api_key_env": "K",
                        "vision": True,
                    }
                ],
            },
            "audio": {"enabled": True},
            "budgets": {"first_token_s": 1, "stall_s": 2, "turn_s": 9},
            "dialog": {"idle_reset_s": 60},
            "persona": {"system_prompt": "Be nice."},
        }
    )
    assert cfg.web.port == 9000 and cfg.llm.endpoints[0].vision is True
    assert cfg.budgets.first_token_s == 1.0 and isinstance(cfg.budgets.first_token_s, float)
    assert cfg.audio.enabled is True


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"web": {"port": "80"}}, "web.port: expected int"),
        ({"web": {"port": 70000}}, "web.port: must be 0..65535"),
        ({"web": {"colour": 1}}, "web.colour: unknown key"),
        ({"llm": {"endpoints": [{"url": "http://x/v1"}]}}, "llm.endpoints[0].name: required"),
        (
            {"llm": {"endpoints": [{"name": "a", "url": "ftp://x/v1"}]}},
            "llm.endpoints[0].url: must start",
        ),
        ({"llm": {"endpoints": [{"name": "a", "url": "http://x/api"}]}}, "ending in /v1"),
        ({"llm": {"endpoints": []}}, "llm.endpoints: at least one"),
        ({"audio": {"enabled": "yes"}}, "audio.enabled: expected bool or 'auto'"),
        ({"budgets": {"turn_s": -1}}, "budgets.turn_s: must be > 0"),
        ({"budgets": {"first_token_s": 5, "turn_s": 4}}, "budgets.first_token_s: must be smaller"),
        ({"persona": {"system_prompt": "hi \ud800"}}, "persona.system_prompt: not valid Unicode"),
        ({"persona": {"system_prompt": "  "}}, "persona.system_prompt: must not be empty"),
        ({"filter": {"blocked_terms": ["ok", 3]}}, "filter.blocked_terms[1]: expected str"),
        ({"dialog": 5}, "dialog: expected a table"),
        ({"voice": {"asr_beam": 0}}, "voice.asr_beam: must be 1..8"),
        ({"voice": {"settled_words": -1}}, "voice.settled_words: must be 0..50"),
        ({"voice": {"paused_words": 51}}, "voice.paused_words: must be 0..50"),
        ({"voice": {"echo_taps": 0}}, "voice.echo_taps: must be 1..32"),
        ({"chat": {"greeting": "Hi {name}!"}}, "chat.greeting: unknown placeholder {name}"),
        ({"chat": {"joke": "A {brace"}}, "chat.joke: not a valid template"),
        ({"voice": {"asr_bias": -1.0}}, "voice.asr_bias: must be >= 0"),
        ({"voice": {"wake_threshold": 1.0}}, "voice.wake_threshold: 0 (the model's own)"),
        ({"voice": {"wake_threshold": -0.1}}, "voice.wake_threshold: 0 (the model's own)"),
    ],
)
def test_bad_values_are_named(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert any(needle in p for p in err.value.problems), err.value.problems


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"web": {"port": "x", "host": 3}, "dialog": {"idle_reset_s": "soon"}})
    assert len(err.value.problems) == 3


def test_bad_toml_names_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[web\nport = 1")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(p) in str(err.value) and "invalid TOML" in str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_save_roundtrip_is_atomic(tmp_path: Path) -> None:
    cfg = parse_config(
        {"web": {"port": 1234}, "filter": {"blocked_terms": ["casino"]}}, base_dir=tmp_path
    )
    path = tmp_path / "c.toml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]  # no temp file left behind
    assert isinstance(again, Config)


def test_temp_files_of_cut_off_saves_are_removed_at_start(tmp_path: Path) -> None:
    """kill -9 between write_atomic's create and rename leaves `.c.toml.XXXX` behind (3 in 200
    trials of `bench faults`); start-up removes those and nothing else."""
    path = tmp_path / "c.toml"
    save_config(parse_config({}, base_dir=tmp_path), path)
    stale = [tmp_path / ".c.toml.a1b2", tmp_path / ".c.toml.zz9"]
    for p in stale:
        p.write_text("[web]\nport = ")  # a half-written save
    keep = [tmp_path / ".other.toml.a1b2", tmp_path / "c.toml.bak", path]
    for p in keep[:2]:
        p.write_text("x")
    assert sorted(remove_stale_temps(path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)
    assert load_config(path) == parse_config({}, base_dir=tmp_path)
    assert remove_stale_temps(path) == []


def float_settings(cls: type = Config, prefix: str = "") -> list[str]:
    """Every float setting as a dotted key (tables recursed into; lists hold no floats)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += float_settings(tp, f"{prefix}{f.name}.")
        elif tp is float:
            keys.append(prefix + f.name)
    return keys


def nested(key: str, value: object) -> dict[str, object]:
    *tables, name = key.split(".")
    data: dict[str, object] = {name: value}
    for table in reversed(tables):
        data = {table: data}
    return data


FLOATS = float_settings()


def test_there_are_float_settings_to_check() -> None:
    assert len(FLOATS) > 20
    assert {"budgets.turn_s", "admin.session_s", "store.retention_days"} <= set(FLOATS)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
@pytest.mark.parametrize("key", FLOATS)
def test_non_finite_floats_are_rejected(key: str, bad: float) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(nested(key, bad))
    assert f"{key}: must be a finite number" in str(err.value), str(err.value)


def test_non_finite_from_toml_and_json(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        "[budgets]\nturn_s = nan\n[admin]\nsession_s = inf\n[store]\nretention_days = -inf\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert sorted(err.value.problems) == [
        "admin.session_s: must be a finite number, got inf",
        "budgets.turn_s: must be a finite number, got nan",
        "store.retention_days: must be a finite number, got -inf",
    ]
    # The admin page's settings editor sends JSON, which Python parses NaN/Infinity in too.
    body = json.loads('{"budgets": {"stall_s": NaN}, "web": {"rate_per_s": Infinity}}')
    with pytest.raises(ConfigError) as err:
        parse_config(body)
    assert sorted(err.value.problems) == [
        "budgets.stall_s: must be a finite number, got nan",
        "web.rate_per_s: must be a finite number, got inf",
    ]
    assert parse_config({"budgets": {"turn_s": 15}}).budgets.turn_s == 15.0  # ints still fine


def test_a_missing_faq_is_not_a_config_error(tmp_path: Path) -> None:
    """The service starts on a fallback FAQ instead (tests/test_admin_paths.py): a bad FAQ path
    must not keep the box, and the admin page that can fix it, down."""
    cfg = parse_config({"knowledge": {"faq": str(tmp_path / "gone.md")}})
    assert cfg.knowledge.faq == str(tmp_path / "gone.md")


def test_paths_the_admin_page_sets_stay_in_the_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "faq.md").write_text("## Q?\nA.\n")
    (state / "link.md").symlink_to("/proc/self/environ")
    (state / "sub").mkdir()
    ok = [
        ("knowledge.faq", "faq.md", str(state / "faq.md")),
        ("knowledge.faq", str(state / "new.md"), str(state / "new.md")),
        ("knowledge.faq", "sub/../faq.md", str(state / "sub/../faq.md")),
        ("store.path", "log.db", str(state / "log.db")),
        ("inference.cache_dir", "sub", str(state / "sub")),
        ("knowledge.faq", "", ""),  # the built-in default
    ]
    for key, value, want in ok:
        assert confined_path(key, value, state) == (want, None), (key, value)
    site = next(p for p in __import__("sys").path if p.endswith("site-packages"))
    refused = [
        ("knowledge.faq", "/proc/self/environ", "outside the state directory"),
        ("knowledge.faq", "../faq.md", "outside the state directory"),
        ("knowledge.faq", "link.md", "outside the state directory"),  # the symlink's target
        ("knowledge.faq", "/etc/passwd", "outside the state directory"),
        ("knowledge.faq", f"{site}/evil.pth", "outside the state directory"),
        ("knowledge.faq", default_faq_path(), "outside the state directory"),
        ("knowledge.faq", "appliance.db", "must end in .md"),
        ("knowledge.faq", "x.pth", "must end in .md"),
        ("store.path", "faq.md", "must end in .db"),
        ("admin.tls_key", "faq.md", "must end in .pem or .key"),
        ("knowledge.faq", "a\x00.md", "not a path"),
    ]
    for key, value, needle in refused:
        _path, problem = confined_path(key, value, state)
        assert problem is not None and needle in problem and problem.startswith(key), (
            value,
            problem,
        )


def test_the_package_and_site_packages_are_refused_even_inside_the_state_directory() -> None:
    # A development checkout may keep its config at the repository root, above the package.
    pkg = Path(default_faq_path()).resolve().parent.parent  # .../appliance
    _, problem = confined_path("knowledge.faq", str(pkg / "data" / "x.md"), pkg.parent)
    assert problem is not None and "Python code directory" in problem
