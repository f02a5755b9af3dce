"""The voice models of one service: loaded from the manifest, warmed up, shared by sessions.

VAD is stateful per audio stream, so the engine keeps the VAD *session* and hands every
pipeline its own `SileroVad` over it; ASR and TTS are stateless and shared behind one
`ModelRunner` each (a CapacityLimiter(1) per model: two concurrent passes of one model on a
small box only fight over the same cores).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnxruntime as ort
import trio

from ..config import Config
from ..inference import InferenceSettings, ModelRunner, create_session
from ..models_manifest import ModelFile, load_manifest, require
from .bias import BiasLexicon
from .moonshine import DecodeOptions, MoonshineAsr
from .speech import SpokenCache
from .tts import PiperTts
from .vad import SileroVad

if TYPE_CHECKING:
    from ..knowledge import KnowledgeBase
    from ..service import ServiceContext

__all__ = ["VoiceEngine", "attach_engine", "engine_of", "inference_settings", "load_engine"]

log = logging.getLogger("appliance.voice.engine")


def inference_settings(cfg: Config) -> InferenceSettings:
    return InferenceSettings(
        providers=cfg.inference.providers,
        intra_op_threads=cfg.inference.intra_op_threads,
        cache_dir=cfg.inference.cache_dir,
    )


def bias_wake_phrase(cfg: Config) -> str:
    """The wake phrase the ASR favours: the configured word's, when the box listens for it."""
    if "wake" not in cfg.voice.listen:
        return ""
    from .wake import wake_phrase

    return wake_phrase(cfg.voice.wake_word)


@dataclass
class VoiceEngine:
    vad_session: ort.InferenceSession
    asr: ModelRunner[MoonshineAsr]
    tts: ModelRunner[PiperTts]
    load_s: float = 0.0
    warm_s: float = 0.0
    # The KnowledgeBase and wake phrase the ASR's bias lexicon was built from (see sync_bias).
    bias_source: object = dataclasses.field(default=None, repr=False, compare=False)
    bias_wake: str = dataclasses.field(default="", repr=False, compare=False)
    # The first chunks of replies already spoken, shared by the service's pipelines (the box's
    # microphone and browsers) and filled ahead by voice/prefill.py.
    spoken: SpokenCache = dataclasses.field(default_factory=SpokenCache, repr=False, compare=False)
    # trio time a pipeline last heard speech or played a reply (see idle_for).
    last_activity: float = dataclasses.field(default=-math.inf, repr=False, compare=False)

    def idle_for(self, seconds: float) -> bool:
        """Nobody has talked to the box or heard it for `seconds`: no pipeline in an utterance
        or a reply, ASR and TTS neither running nor run. Background work (voice/prefill.py)
        goes ahead only then, on every pipeline's account (the box's microphone and browsers)."""
        now = trio.current_time()
        models = (self.asr, self.tts)
        last = max(self.last_activity, *(m.last_used for m in models))
        return now - last >= seconds and not any(m.busy for m in models)

    def new_vad(self) -> ModelRunner[SileroVad]:
        """A fresh VAD stream state over the shared session (one per pipeline)."""
        return ModelRunner(SileroVad(self.vad_session), name="vad")

    async def sync_bias(self, knowledge: KnowledgeBase | None, wake_phrase: str = "") -> bool:
        """Bias the ASR toward the FAQ of `knowledge` and the wake phrase (neither: no
        biasing); True if it rebuilt.

        Every FAQ load or save makes a new KnowledgeBase, so this rebuilds only when
        `knowledge` is another object than last time (or the phrase changed) and is free to
        call before every transcription. A rebuild (~20 ms: lexicon, then its trie in ASR
        tokens) runs on a worker thread; a transcription under way finishes with the lexicon
        it started with. It takes effect with options that bias (`DecodeOptions()`, see
        `load_blocking`).
        """
        if knowledge is self.bias_source and wake_phrase == self.bias_wake:
            return False
        entries = () if knowledge is None else knowledge.entries

        def rebuild() -> None:
            self.asr.model.set_bias(BiasLexicon.for_site(entries, wake_phrase))

        await trio.to_thread.run_sync(rebuild)
        self.bias_source, self.bias_wake = knowledge, wake_phrase
        return True

    @classmethod
    def load_blocking(
        cls,
        settings: InferenceSettings,
        manifest: dict[str, ModelFile] | None = None,
        *,
        check_hash: bool = True,
        asr_options: DecodeOptions | None = None,
    ) -> VoiceEngine:
        """Load and warm up all three models. Blocking: call via trio.to_thread.run_sync.

        `asr_options`: the ASR search, greedy when None; `DecodeOptions()` is the tuned beam
        search that biases toward the FAQ once `sync_bias` has given it one.

        Raises ModelError (a file missing or with the wrong hash, naming it) or SessionError.
        """
        m = manifest if manifest is not None else load_manifest()
        t0 = time.perf_counter()
        vad_path = require(m, "vad", check_hash=check_hash)
        # One thread for the tiny VAD: fan-out would cost more than it saves.
        vad_session, _ = create_session(
            vad_path, dataclasses.replace(settings, intra_op_threads=1), name="vad"
        )
        # One after another: the TTS on a second thread beside the ASR cost ~130 MB of RSS (a
        # second malloc arena) and no start-up time, the knowledge loading beside them anyway.
        asr = MoonshineAsr.load(settings, m, check_hash=check_hash, options=asr_options)
        tts = PiperTts.load(settings, m, check_hash=check_hash)
        t1 = time.perf_counter()
        # READY only after every model ran once: the first visitor must not pay ORT's lazy
        # allocations (or find out that espeak-ng is missing).
        vad = SileroVad(vad_session)
        vad.warm_up()
        asr.warm_up()
        tts.warm_up()
        t2 = time.perf_counter()
        log.info("voice models loaded in %.2f s, warmed up in %.2f s", t1 - t0, t2 - t1)
        return cls(
            vad_session=vad_session,
            asr=ModelRunner(asr, name="asr", providers=asr.providers),
            tts=ModelRunner(tts, name="tts", providers=tts.providers),
            load_s=t1 - t0,
            warm_s=t2 - t1,
        )


def load_engine_blocking(cfg: Config) -> VoiceEngine:
    """`VoiceEngine.load_blocking` as `cfg` says; blocking."""
    options = DecodeOptions(beam=cfg.voice.asr_beam, bias_weight=cfg.voice.asr_bias)
    return VoiceEngine.load_blocking(
        inference_settings(cfg), check_hash=cfg.voice.check_hashes, asr_options=options
    )


async def load_engine(cfg: Config) -> VoiceEngine:
    """Load + warm up off the event loop."""
    return await trio.to_thread.run_sync(load_engine_blocking, cfg)


# The service context types the field as `object` (it must not import voice/); these two keep
# the narrowing in one place.
def attach_engine(ctx: ServiceContext, engine: VoiceEngine | None) -> None:
    ctx.voice_engine = engine


def engine_of(ctx: ServiceContext) -> VoiceEngine | None:
    engine = ctx.voice_engine
    return engine if isinstance(engine, VoiceEngine) else None
