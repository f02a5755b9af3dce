"""`appliance demo`: a spoken FAQ question in a WAV file -> transcript, reply, reply audio.

The CLI runs as a subprocess (its real entry point), the file streamed at real-time pace
through the real models; the LLM is the scripted server (`--llm-url`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import trio
from voicefixtures import speech_16k

from appliance.audio.resample import resample
from appliance.demo import DemoInputError, read_wav, write_wav
from appliance.fakes.scripted_llm import ScriptedLLM


def write_stereo_44k(path: Path, audio_16k: np.ndarray) -> None:
    a = resample(audio_16k, 16000, 44100)
    pcm = (np.clip(np.stack([a, 0.5 * a], axis=1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(pcm.tobytes())


def test_read_wav_converts_to_16k_mono_and_rejects_junk(tmp_path: Path) -> None:
    speech = speech_16k("Is there a cafe?")
    p = tmp_path / "q.wav"
    write_stereo_44k(p, speech)
    got = read_wav(p)
    assert abs(len(got) - len(speech)) <= 2
    n = min(len(got), len(speech))
    corr = np.corrcoef(got[:n], 0.75 * speech[:n])[0, 1]
    assert corr > 0.99  # same speech, channels averaged
    out = tmp_path / "o.wav"
    write_wav(out, got, 16000)
    assert len(read_wav(out)) == len(got)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    for path in (bad, tmp_path / "missing.wav"):
        try:
            read_wav(path)
        except DemoInputError as exc:
            assert str(path) in str(exc)
        else:
            raise AssertionError("no error")


def test_bad_input_file_exits_2_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    r = subprocess.run(
        [sys.executable, "-m", "appliance", "demo", "--wav", str(bad), "--out", "o.wav"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 2
    assert "not a readable PCM WAV" in r.stderr and str(bad) in r.stderr


async def test_demo_json_one_voice_turn(tmp_path: Path, llm: ScriptedLLM) -> None:
    llm.script.reply = "Yes, the cafe is on the ground floor."
    question = speech_16k("Is there a cafe in the museum?")
    wav = tmp_path / "q.wav"
    write_stereo_44k(wav, np.concatenate([np.zeros(8000, np.float32), question]))
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(
        '[knowledge]\nsemantic = false\nanswer_mode = "open"\n[audio]\nenabled = false\n'
    )
    out = tmp_path / "reply.wav"
    cmd = [sys.executable, "-m", "appliance", "demo", "--wav", str(wav), "--out", str(out)]
    cmd += ["--json", "--config", str(cfg), "--llm-url", llm.url]
    with trio.fail_after(120):
        r = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    assert r.returncode == 0, r.stderr.decode()
    result = json.loads(r.stdout)
    assert "cafe" in result["transcript"].lower().replace("é", "e")
    assert result["reply"] == llm.script.reply and result["outcome"] == "ok"
    t = result["timings"]
    for key in ("asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms"):
        assert isinstance(t[key], float | int) and t[key] >= 0, key
    # end of speech -> first reply audio includes the silence hangover, so never below it
    assert t["voice_to_voice_ms"] >= t["vad_end_ms"]
    reply = read_wav(out)
    assert len(reply) / 16000 > 1.0 and float(np.sqrt(np.mean(reply**2))) > 0.01
    assert result["audio_out_s"] > 1.0
