"""Where the kiosk and admin pages' static files are (no import of the apps: both use it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ui_dir"]


def ui_dir() -> Path:
    """kiosk_ui/ beside the package (the repo checkout or /opt/appliance)."""
    return Path(__file__).resolve().parents[2] / "kiosk_ui"
