"""The PulseAudio fixture for audio tests (import it); the daemon is appliance.bench.pulse's.

    from pulse import PulseDaemon, pulse  # noqa: F401  (fixture)

One implementation of the private daemon and its virtual devices (`spk`, `micfeed` -> `vmic`)
serves the tests and `appliance bench voice`; here it is only wrapped as a session fixture that
points this process at it (PULSE_SERVER, XDG_RUNTIME_DIR) and is skipped without PulseAudio.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.bench.pulse import (
    MIC_ARGS,
    MIC_MODULE,
    RATE,
    PulseDaemon,
    PulseStartError,
    Recording,
    missing_tools,
)

__all__ = ["MIC_ARGS", "MIC_MODULE", "RATE", "PulseDaemon", "Recording", "pulse"]


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseDaemon]:
    """The session's PulseAudio daemon; PULSE_SERVER points this process at it meanwhile."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"PulseAudio tools not installed: {', '.join(missing)}")
    daemon = PulseDaemon(tmp_path_factory.mktemp("pulse"))
    try:
        daemon.start()
    except PulseStartError as e:
        pytest.fail(str(e))
    with pytest.MonkeyPatch.context() as mp:
        for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR"):
            mp.setenv(key, daemon.env[key])
        try:
            yield daemon
        finally:
            daemon.stop()
