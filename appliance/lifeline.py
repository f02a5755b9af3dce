"""A child process that dies with us, however we die (SIGKILL and the OOM killer included).

Linux's `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
process. trio forks from its worker-thread cache, whose idle threads exit after 10 s, so a
child armed that way was killed 10-20 s after every start while the box idled. A pipe does not
care about threads: we hold its write end for as long as our process lives (the kernel closes
it on any exit), the child holds the read end, and a thread in the child blocked on reading it
sees end-of-file at that moment and kills the child's process group.

Parent side: `Lifeline` (a pipe; `command()` wraps a Python module's command line, `pass_fds`
goes to the spawn call, `close()` once the child is gone). Child side:
`python -m appliance.lifeline FD MODULE [ARGS...]` starts the watcher, then runs MODULE as
`__main__` in the same process. Standard library only: this module runs inside the child.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

__all__ = ["Lifeline", "child_environment", "main"]

# Variables a child may inherit. Everything else (API keys, tokens, credentials) stays with us.
_ENV_KEEP = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHOME", "USER"}
)
_ENV_KEEP_PREFIXES = ("LC_", "OMP_", "GGML_", "LLAMA_", "XDG_RUNTIME_DIR")


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` a child process gets: locale, paths and its own tuning knobs. Pure."""
    return {k: v for k, v in env.items() if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}


class Lifeline:
    """One pipe per child. Spawn with `pass_fds=lifeline.pass_fds`, then `after_spawn()`;
    `close()` when the child has exited (also safe if the spawn failed)."""

    def __init__(self) -> None:
        # os.pipe() fds are close-on-exec: only the child we pass the read end to gets it.
        self._read, self._write = os.pipe()

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._read,)

    def command(self, python: str, module: str, args: Sequence[str]) -> list[str]:
        """`python -m MODULE ARGS...`, run under the lifeline watcher."""
        return [python, "-m", "appliance.lifeline", str(self._read), module, *args]

    def after_spawn(self) -> None:
        """The child has its copy of the read end: ours would only keep the pipe open."""
        self._close_read()

    def close(self) -> None:
        self._close_read()
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def _close_read(self) -> None:
        if self._read >= 0:
            os.close(self._read)
            self._read = -1


def _watch(fd: int) -> None:
    while True:
        try:
            if os.read(fd, 64):
                continue  # nobody writes; ignore anything all the same
        except InterruptedError:
            continue
        except OSError:
            pass
        break
    # The parent is gone. Nothing here is worth a graceful stop: end the whole group now.
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: Sequence[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m appliance.lifeline FD MODULE [ARGS...]")
    fd = int(argv[0])
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # our own group, so the kill below cannot reach the parent's
    threading.Thread(target=_watch, args=(fd,), name="lifeline", daemon=True).start()
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
