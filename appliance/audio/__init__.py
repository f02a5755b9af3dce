"""Audio I/O on real devices: microphone capture and speaker playback bridged into trio.

`Capture` and `Playback` each own one PortAudio stream (sounddevice, imported lazily), reopen
it by themselves when the device comes back, and let the kiosk run text-only meanwhile.
"""

from appliance.audio.capture import Capture
from appliance.audio.devices import AudioSettings
from appliance.audio.playback import Playback
from appliance.audio.resample import StreamResampler

__all__ = ["AudioSettings", "Capture", "Playback", "StreamResampler"]
