"""Where a trio program's tasks are waiting: the bench's answer to "it hung, but where?".

A hung fault scenario is cancelled by its time limit, and a plain traceback then shows only the
cancellation. Walking trio's task tree *before* cancelling shows each task's await chain, which
names the socket read or lock the scenario was stuck on (reported in the fault's detail).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

__all__ = ["await_chain", "task_stacks"]


def await_chain(coro: Any) -> list[str]:
    """`file:line function` for each frame of a suspended coroutine, outermost first."""
    chain: list[str] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        frame = frame or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        code = frame.f_code
        chain.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        coro = nxt or getattr(coro, "ag_await", None)
    return chain


def task_stacks(limit: int = 60, frames: int = 6) -> list[str]:
    """One line per task of the current trio run: its name and innermost `frames` frames."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        if len(lines) >= limit:
            return
        chain = await_chain(task.coro)[-frames:]
        lines.append(f"{'  ' * depth}{task.name}: {' > '.join(chain)}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    root = trio.lowlevel.current_root_task()
    if root is not None:
        walk(root, 0)
    return lines
