"""One persona's call: audio, VAD, STT, TTS, brain, transport and the session that ties them."""

import os

# onnxruntime (under Piper) resolves a telemetry host every few seconds unless this is set
# before it loads: DNS traffic off a machine whose calls must stay on 127.0.0.0/8. Every entry
# point (CLI, Ray hosts, the reference agent, tests) imports this package first.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
