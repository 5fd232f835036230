"""How callers hear and speak: the SpeechToText and TextToSpeech seams (stt, tts), in-process
Whisper (stt, stt_batch: the short window) and Piper (tts), the host's TTS cache (tts_cache),
OpenAI-compatible services (stt_openai, tts_openai, openai_speech), the run's Ray Serve
deployments (serve_speech) and the agent's speech segments (vad)."""
