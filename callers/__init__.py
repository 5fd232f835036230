"""One persona's call: audio, VAD, STT, TTS, brain, transport and the session that ties them."""
