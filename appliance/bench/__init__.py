"""`appliance bench`: placeholder until the bench harness lands (owned by the bench work)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_bench_parser"]


def add_bench_parser(sub: Any) -> None:
    bench: argparse.ArgumentParser = sub.add_parser("bench", help="measure latency and throughput")
    bench.set_defaults(func=lambda args: 2)
