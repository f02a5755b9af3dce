"""A child spawned through a lifeline outlives the thread that spawned it and dies with us."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import trio

from appliance.lifeline import Lifeline, child_environment

# The parent: spawns a sleeping child through a Lifeline from a worker thread that then exits
# (as trio's cached worker threads do after 10 s idle), prints the child's pid, and waits.
_PARENT = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    from appliance.lifeline import Lifeline

    def spawn(out):
        lifeline = Lifeline()
        out.append(subprocess.Popen(
            lifeline.command(sys.executable, "sleeper", []),
            pass_fds=lifeline.pass_fds, start_new_session=True,
        ))
        lifeline.after_spawn()

    procs = []
    t = threading.Thread(target=spawn, args=(procs,))
    t.start()
    t.join()  # the spawning thread is gone now
    print(procs[0].pid, flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_child_survives_its_spawning_thread_and_dies_with_the_parent(
    tmp_path: Path,
) -> None:
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(600)\n")
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    parent = await trio.lowlevel.open_process(
        [sys.executable, "-c", _PARENT],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    )
    child: int | None = None
    try:
        assert parent.stdout is not None
        out = b""
        with trio.fail_after(30):
            while not out.endswith(b"\n"):
                out += await parent.stdout.receive_some(64)
        child = int(out)
        # The kernel signals a PDEATHSIG child as the thread exits (within ~1 ms here); give
        # such a signal time to land before looking.
        await trio.sleep(0.3)
        assert _alive(child), "the child died with the thread that spawned it"
        parent.kill()  # SIGKILL: no handler of ours runs
        await parent.wait()
        with trio.fail_after(2):
            while _alive(child):
                await trio.sleep(0.02)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if parent.stdout is not None:
            await parent.stdout.aclose()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_lifeline_closes_both_ends_and_children_get_no_secrets() -> None:
    lifeline = Lifeline()
    (read_fd,) = lifeline.pass_fds
    cmd = lifeline.command("/py", "llama_cpp.server", ["--port", "1"])
    assert cmd == [
        "/py",
        "-m",
        "appliance.lifeline",
        str(read_fd),
        "llama_cpp.server",
        "--port",
        "1",
    ]
    lifeline.after_spawn()
    lifeline.close()
    lifeline.close()  # idempotent
    try:
        os.fstat(read_fd)
        raise AssertionError("read end still open")
    except OSError:
        pass
    env = child_environment(
        {"PATH": "/bin", "LC_ALL": "C", "OPENAI_API_KEY": "sk-x", "AWS_SECRET": "y", "HOME": "/r"}
    )
    assert env == {"PATH": "/bin", "LC_ALL": "C", "HOME": "/r"}
