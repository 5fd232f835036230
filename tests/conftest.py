"""Shared fixtures: the real Piper voice, loaded once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth():
    from callers.speech.tts import Synthesizer

    s = Synthesizer()
    yield s
    s.close()
