"""ScriptedBrain: what it hears in the agent's words and what it answers; Brain.reply's fallback."""

from __future__ import annotations

import asyncio

import pytest

from callers.brain import Brain, Reply, ScriptedBrain, classify_intent, read_backs
from callers.language import find_amount
from callers.persona import find_persona, list_personas

JOHN = find_persona("cooperative-john")
FLOW = [
    "Hello! How can I help you today?",
    "What is your first name?",
    "And your last name?",
    "What amount of money is this about?",
    "How was this call?",
    "Thank you, goodbye!",
]



def john_with(**temperament: float):
    return JOHN.model_copy(update={"temperament": JOHN.temperament.model_copy(update=temperament)})


@pytest.mark.parametrize(
    ("agent_text", "intent"),
    [
        ("How can I help you today?", "reason"),
        ("hello thanks for calling how can i help you today", "reason"),
        ("What is your first name?", "first_name"),
        ("What's your first name.", "first_name"),
        ("May I have your name, please?", "first_name"),
        ("And your last name?", "last_name"),
        ("Thanks, John. And what is your surname", "last_name"),
        ("What amount of money is this about?", "amount"),
        ("How much was it?", "amount"),
        ("I have your last name as Smith, is that correct?", "confirmation"),
        ("So that's 250 dollars, is that right?", "confirmation"),
        ("I have your last name as Smith.", "confirmation"),
        ("Got it. I have your last name as Smith. What amount of money is this about?", "amount"),
        ("how was this call", "feedback"),
        ("Before you go, how was this call?", "feedback"),
        ("Goodbye!", "goodbye"),
        ("Thanks for your feedback. Have a nice day.", "goodbye"),
        ("Is there anything else I can help you with?", "goodbye"),
        ("The weather is lovely.", "other"),
        ("", "other"),
    ],
)
def test_intent_classification_on_whisper_style_transcripts(agent_text, intent):
    assert classify_intent(agent_text) == intent


def test_read_backs_parse_names_spelled_letters_and_amounts_in_words_or_digits():
    assert read_backs("I have your last name as S-M-Y-T-H, correct?") == {"last_name": "Smyth"}
    assert read_backs("I have your name as John Smith.") == {"first_name": "John",
                                                            "last_name": "Smith"}
    assert read_backs("The amount is two hundred dollars.") == {"amount": "200"}
    assert read_backs("That's $1,200, is that right?") == {"amount": "1200"}
    assert read_backs("What is your last name?") == {}
    assert read_backs("Your reference number is 4521.") == {}


@pytest.mark.parametrize("persona", list_personas(), ids=lambda p: p.id)
async def test_answers_contain_the_persona_facts(persona):
    brain = ScriptedBrain(persona, seed=3)
    reason = await brain.reply(FLOW[0], [])
    first = await brain.reply(FLOW[1], [])
    last = await brain.reply(FLOW[2], [])
    amount = await brain.reply(FLOW[3], [])
    assert persona.facts.reason in reason.text
    assert persona.facts.first_name in first.text
    assert persona.facts.last_name in last.text
    assert find_amount(amount.text) == persona.facts.amount
    assert [r.intent for r in (reason, first, last, amount)] == [
        "reason", "first_name", "last_name", "amount"]


async def test_goal_is_met_once_reason_names_and_amount_were_given():
    brain = ScriptedBrain(JOHN, seed=1)
    for agent_text in FLOW[:3]:
        await brain.reply(agent_text, [])
        assert not brain.goal_met
    await brain.reply(FLOW[3], [])
    assert brain.facts_given == {"reason", "first_name", "last_name", "amount"}
    assert brain.goal_met


async def test_full_name_question_gives_both_names():
    reply = await ScriptedBrain(JOHN, seed=1).reply("Who am I speaking with?", [])
    assert "John Smith" in reply.text
    assert set(reply.facts) == {"first_name", "last_name"}


async def test_same_persona_and_seed_give_the_same_words():
    async def transcript(seed: int) -> list[str]:
        brain = ScriptedBrain(JOHN, seed=seed)
        return [(await brain.reply(text, [])).text for text in FLOW]

    assert await transcript(7) == await transcript(7)
    assert len({tuple(await transcript(seed)) for seed in range(10)}) > 1


async def test_verbosity_chooses_longer_phrasings():
    async def words(persona) -> int:
        brain = ScriptedBrain(persona, seed=5)
        return sum([len((await brain.reply(text, [])).text.split()) for text in FLOW])

    assert await words(john_with(verbosity=1.0)) > await words(john_with(verbosity=0.0))


async def test_goodbye_is_answered_but_the_agent_hangs_up():
    reply = await ScriptedBrain(JOHN, seed=1).reply("Thank you for calling, goodbye!", [])
    assert reply.text in ("Bye!", "Thanks, bye.", "Thank you, bye!", "Thanks for your help, bye.")
    assert not reply.end_call


async def test_unclear_agent_is_asked_to_repeat():
    reply = await ScriptedBrain(JOHN, seed=1).reply("Mumble mumble.", [])
    assert "repeat" in reply.text and reply.intent == "other" and not reply.end_call


async def test_impatient_caller_hangs_up_after_too_many_unclear_turns():
    brain = ScriptedBrain(john_with(patience=0.0), seed=1)
    assert brain.max_repeats == 1
    assert not (await brain.reply("Mumble.", [])).end_call
    assert (await brain.reply("Mumble.", [])).end_call


async def test_wrong_last_name_read_back_is_corrected_before_the_next_answer():
    brain = ScriptedBrain(JOHN, seed=1)
    agent_text = "I have your last name as Smyth. What amount of money is this about?"
    reply = await brain.reply(agent_text, [])
    assert reply.text.startswith("No, it's Smith, S-M-I-T-H. ")
    assert find_amount(reply.text.split("S-M-I-T-H.")[1]) == 250
    assert reply.intent == "amount"
    assert reply.corrections == ("last_name",)


async def test_wrong_amount_read_back_is_corrected_in_words():
    reply = await ScriptedBrain(JOHN, seed=1).reply("So that's 300 dollars, is that right?", [])
    assert reply.text == "No, it's two hundred fifty dollars."
    assert reply.corrections == ("amount",)


async def test_wrong_amount_in_words_is_corrected_then_the_question_answered():
    reply = await ScriptedBrain(JOHN, seed=1).reply(
        "I have the amount as two hundred dollars. How was this call?", [])
    assert reply.text.startswith("No, it's two hundred fifty dollars. ")
    assert reply.intent == "feedback"


async def test_right_read_back_is_confirmed_without_a_correction():
    reply = await ScriptedBrain(JOHN, seed=1).reply(
        "I have your last name as Smith and the amount as $250. Is that correct?", [])
    assert reply.text.startswith("Yes")
    assert reply.corrections == ()


class _SlowBrain(Brain):
    async def _decide(self, agent_text, history):
        await asyncio.sleep(5)
        return Reply("too late", source="slow")


class _BrokenBrain(Brain):
    async def _decide(self, agent_text, history):
        raise RuntimeError("endpoint down")


async def test_timeout_falls_back_to_the_scripted_policy_and_records_why():
    brain = _SlowBrain(timeout_s=0.05, fallback=ScriptedBrain(JOHN, seed=1))
    reply = await brain.reply("What is your first name?", [])
    assert "John" in reply.text
    assert reply.source == "scripted" and reply.fallback_reason == "timeout"
    assert 40 <= reply.latency_ms < 1000
    assert brain.facts_given == {"first_name"}


async def test_error_falls_back_and_names_the_error():
    brain = _BrokenBrain(fallback=ScriptedBrain(JOHN, seed=1))
    reply = await brain.reply("And your last name?", [])
    assert "Smith" in reply.text
    assert reply.fallback_reason == "RuntimeError: endpoint down"


async def test_error_without_fallback_propagates():
    with pytest.raises(RuntimeError):
        await _BrokenBrain().reply("Hello?", [])


async def test_scripted_reply_is_measured_and_not_marked_as_fallback():
    reply = await ScriptedBrain(JOHN, seed=1).reply("What is your first name?", [])
    assert reply.source == "scripted" and reply.fallback_reason == ""
    assert reply.latency_ms >= 0
