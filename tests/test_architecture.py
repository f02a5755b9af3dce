"""The import rules of docs/architecture.md, checked on the source: a forbidden import fails here,
not in a review. Static (ast), so a TYPE_CHECKING-only import counts too: a type is a
dependency as well."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "appliance"

# (importer prefix, imported prefix, why)
FORBIDDEN = [
    ("appliance.voice", "appliance.web", "voice is transport-agnostic"),
    ("appliance.audio", "appliance.voice", "audio is a leaf under voice"),
    ("appliance.audio", "appliance.web", "audio is a leaf under voice"),
    ("appliance.llm", "appliance.voice", "the LLM client knows nothing of speech"),
    ("appliance.llm", "appliance.web", "the LLM client knows nothing of transports"),
    ("appliance.knowledge", "appliance.voice", "retrieval is text in, text out"),
    ("appliance.knowledge", "appliance.web", "retrieval is text in, text out"),
    ("appliance.service", "appliance.web", "web depends on the service, not the reverse"),
    ("appliance.service", "appliance.voice", "voice depends on the service, not the reverse"),
    ("appliance.turns", "appliance.web", "a turn emits events; transports encode them"),
    ("appliance.turns", "appliance.voice", "a turn is text; the spoken turn wraps it"),
    ("appliance.events", "appliance", "events are plain data"),
    ("appliance.config", "appliance", "config is the bottom layer"),
    ("appliance.dialog", "appliance", "the dialog state machine is pure"),
]
# Only the supervisor (and web itself) may import web/.
WEB_IMPORTERS = ("appliance.web", "appliance.supervisor")
# The pure state machines import no I/O.
PURE = {
    "appliance.dialog",
    "appliance.voice.segmenter",
    "appliance.events",
    "appliance.web.protocol",
}
IO_MODULES = {"trio", "socket", "sqlite3", "httpx", "subprocess", "sounddevice", "quart"}


def _module(path: Path) -> tuple[str, str]:
    """(module name, package the module's relative imports start from)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def targets(source: str, pkg: str) -> set[str]:
    """Every module `source` (a module of package `pkg`) imports, relative imports resolved;
    `from x import y` also names `x.y` (it may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        mod, pkg = _module(path)
        out[mod] = targets(path.read_text(encoding="utf-8"), pkg)
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


GRAPH = imports()


def test_the_scan_sees_the_package() -> None:
    assert "appliance.voice.pipeline" in GRAPH and "appliance.events" in GRAPH["appliance.turns"]


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN)
def test_forbidden_imports(importer: str, imported: str, why: str) -> None:
    bad = sorted(
        f"{mod} -> {target}"
        for mod, targets in GRAPH.items()
        if _under(mod, importer)
        for target in targets
        if _under(target, imported) and not _under(target, importer)
    )
    assert not bad, f"{why}: {bad}"


def test_only_the_supervisor_imports_web() -> None:
    bad = sorted(
        f"{mod} -> {target}"
        for mod, targets in GRAPH.items()
        if not any(_under(mod, p) for p in WEB_IMPORTERS)
        for target in targets
        if _under(target, "appliance.web")
    )
    assert not bad, bad


def test_pure_modules_do_no_io() -> None:
    bad = sorted(
        f"{mod} -> {target}"
        for mod in PURE
        for target in GRAPH[mod]
        if target.split(".")[0] in IO_MODULES
    )
    assert not bad, bad


def test_the_scan_resolves_relative_imports() -> None:
    """The checker itself: relative imports from voice/ into web/ are resolved and caught."""
    found = targets(
        "from ..web.ws import WsConnection\nfrom . import pipeline\n", "appliance.voice"
    )
    assert {"appliance.web.ws", "appliance.voice.pipeline"} <= found
    assert any(_under(t, "appliance.web") for t in found)
