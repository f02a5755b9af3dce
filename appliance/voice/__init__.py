"""Voice stages: VAD, ASR and TTS models (blocking; callers run them on worker threads)."""
