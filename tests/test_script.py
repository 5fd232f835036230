"""Fixed scripts: said in order at their times, nothing decided; validated like any scenario."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from callers.errors import ConfigError
from callers.persona import resolve_persona
from callers.scenario import facts_for, load_scenario
from callers.script import ScriptBrain, brain_for, wav_utterance

SCRIPT = """
id: scripted
goal: Say three things, whatever the agent says.
script:
  - {say: "Hello, I'd like to check an order.", after_agent_ms: 600}
  - {say: "Sorry, one more thing.", into_agent_turn_ms: 900, mode: barge_in}
  - {say: "Thanks, bye.", after_agent_ms: 300}
"""


def scripted(tmp_path, text=SCRIPT):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return facts_for(load_scenario(path), {})


async def test_script_turns_are_said_in_order_at_their_times_whatever_the_agent_says(tmp_path):
    facts = scripted(tmp_path)
    brain = brain_for(resolve_persona("impatient-sam"), 1, facts)
    assert isinstance(brain, ScriptBrain) and not brain.goal_met
    assert brain.rehearse() == ["Hello, I'd like to check an order.", "Sorry, one more thing.",
                                "Thanks, bye."]  # spoken ahead, in order
    first = await brain.reply("Bleep bloop (a language the caller does not speak).", [])
    assert (first.text, first.speak_after_ms, first.end_call) == (
        "Hello, I'd like to check an order.", 600, False)
    # The next turn belongs inside the agent's next turn: no reply after this one.
    assert (await brain.reply("Anything.", [])).text == ""
    barge = brain.interjection()
    assert (barge.say, barge.into_agent_turn_ms, barge.mode) == (
        "Sorry, one more thing.", 900, "barge_in")
    assert brain.interjection() is None
    last = await brain.reply("Anything at all.", [])
    assert last.text == "Thanks, bye." and last.end_call and brain.goal_met


@pytest.mark.parametrize(("turn", "expected"), [
    ('{say: "Hi", wav: "x.wav"}', "exactly one of say or wav"),
    ('{say: "Hi", after_agent_ms: 1, into_agent_turn_ms: 2}', "not both"),
    ('{say: "mm-hmm", mode: backchannel}', "needs into_agent_turn_ms"),
    ('{wav: "/nonexistent/a.wav"}', "wav file not found"),
])
def test_bad_script_turns_are_one_line_errors(tmp_path, turn, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        scripted(tmp_path, f"id: s\ngoal: g\nscript:\n  - {turn}\n")
    assert "\n" not in str(info.value) and "script.0" in str(info.value)


def test_a_recorded_turn_plays_as_recorded(tmp_path):
    path = tmp_path / "tone.wav"
    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    utterance = wav_utterance(path, mode="barge_in")
    assert utterance.mode == "barge_in" and utterance.text == "[tone.wav]"
    assert abs(utterance.pcm48.size - 48_000) < 100  # 1 s at the wire rate


async def test_the_facts_a_script_states_are_given_so_they_are_graded(tmp_path):
    facts = scripted(tmp_path, """
id: scripted-dispute
goal: Say fixed lines.
script:
  - {say: "My first name is John.", after_agent_ms: 800}
  - {say: "Smith.", after_agent_ms: 800}
  - {say: "Thanks.", after_agent_ms: 800}
facts:
  first_name: {type: name, value: John}
  last_name: {type: name, value: Smith}
  amount: {type: money, value: 250}
""")
    brain = brain_for(resolve_persona("cooperative-john"), 1, facts)
    assert (await brain.reply("What is your first name?", [])).facts == ("first_name",)
    assert (await brain.reply("And your last name?", [])).facts == ("last_name",)
    assert (await brain.reply("How much?", [])).facts == ()
    assert brain.facts_given == {"first_name", "last_name"}  # amount never said: not graded
