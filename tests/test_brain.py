"""ScriptedBrain: what it hears in the agent's words and what it answers; Brain.reply's fallback."""

from __future__ import annotations

import asyncio
import random

import pytest

from callers import facts as typed
from callers.behaviour import BACKCHANNELS
from callers.brain import Brain, Reply, ScriptedBrain, default_facts
from callers.language import find_amount
from callers.persona import find_persona, list_personas

JOHN = find_persona("cooperative-john")
JOHNS = default_facts(JOHN)  # the card-dispute scenario with John's case
FACT_ORDER = ("reason", "first_name", "last_name", "amount")


def classify_intent(agent_text: str) -> str:
    return ScriptedBrain(JOHN, seed=1).classify(agent_text)


def read_backs(agent_text: str) -> dict[str, str]:
    return typed.read_backs(agent_text, JOHNS.typed_facts)


def wrong_read_backs(agent_text: str) -> list[str]:
    return typed.wrong_read_backs(agent_text, JOHNS.typed_facts)
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


def john_correcting(probability: float):
    behaviours = JOHN.behaviours.model_copy(
        update={"correction": JOHN.behaviours.correction.model_copy(
            update={"probability": probability})})
    return JOHN.model_copy(update={"behaviours": behaviours})


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
        ("Is there anything else I can help you with?", "anything_else"),
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
    assert persona.facts["reason"] in reason.text
    assert persona.facts["first_name"] in first.text
    assert persona.facts["last_name"] in last.text
    assert find_amount(amount.text) == persona.facts["amount"]
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
    assert reply.text.startswith("No, it's ") and "dollars" in reply.text
    assert find_amount(reply.text) == 250
    assert reply.corrections == ("amount",)


async def test_wrong_amount_in_words_is_corrected_then_the_question_answered():
    reply = await ScriptedBrain(JOHN, seed=1).reply(
        "I have the amount as two hundred dollars. How was this call?", [])
    correction, answer = reply.text.split(". ", 1)
    assert correction.startswith("No, it's ") and find_amount(correction) == 250
    assert reply.intent == "feedback" and answer


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
    brain = _SlowBrain(JOHNS, timeout_s=0.05, fallback=ScriptedBrain(JOHN, seed=1))
    reply = await brain.reply("What is your first name?", [])
    assert "John" in reply.text
    assert reply.source == "scripted" and reply.fallback_reason == "timeout"
    assert 40 <= reply.latency_ms < 1000
    assert brain.facts_given == {"first_name"}


async def test_error_falls_back_and_names_the_error():
    brain = _BrokenBrain(JOHNS, fallback=ScriptedBrain(JOHN, seed=1))
    reply = await brain.reply("And your last name?", [])
    assert "Smith" in reply.text
    assert reply.fallback_reason == "RuntimeError: endpoint down"


async def test_error_without_fallback_propagates():
    with pytest.raises(RuntimeError):
        await _BrokenBrain(JOHNS).reply("Hello?", [])


async def test_scripted_reply_is_measured_and_not_marked_as_fallback():
    reply = await ScriptedBrain(JOHN, seed=1).reply("What is your first name?", [])
    assert reply.source == "scripted" and reply.fallback_reason == ""
    assert reply.latency_ms >= 0


# --- wrong read-backs, shared by ScriptedBrain and LLMBrain ---------------------------------


def test_wrong_read_backs_lists_only_the_wrong_values_names_first():
    # John Smith, 250
    assert wrong_read_backs("So that's 300 dollars, and your last name as Smyth?") == [
        "last_name", "amount"]
    assert wrong_read_backs("I have your name as Jon Smith.") == ["first_name"]
    assert wrong_read_backs("I have your last name as S-M-I-T-H and $250.") == []
    assert wrong_read_backs("What is your last name?") == []


# --- correction probability -----------------------------------------------------------------

WRONG_THEN_QUESTION = "I have your last name as Smyth. What amount of money is this about?"
WRONG_CONFIRM = "I have your last name as Smyth, is that correct?"


async def test_correction_probability_0_lets_a_wrong_read_back_pass():
    brain = ScriptedBrain(john_correcting(0.0), seed=1)
    confirmed = await brain.reply(WRONG_CONFIRM, [])
    assert confirmed.text.startswith("Yes") and confirmed.intent == "confirmation"
    assert confirmed.corrections == () and "last_name" not in brain.facts_given
    answered = await brain.reply(WRONG_THEN_QUESTION, [])
    assert "Smith" not in answered.text and "S-M-I-T-H" not in answered.text
    assert find_amount(answered.text) == 250 and answered.corrections == ()


async def test_correction_probability_follows_its_own_seeded_stream():
    for seed in (1, 2, 3):
        brain = ScriptedBrain(john_correcting(0.5), seed=seed)
        stream = random.Random(f"{seed}:correction")
        expected = [stream.random() < 0.5 for _ in range(20)]
        corrected = [bool((await brain.reply(WRONG_CONFIRM, [])).corrections)
                     for _ in range(20)]
        assert corrected == expected
        assert 0 < sum(corrected) < 20


async def test_turns_without_a_wrong_read_back_draw_nothing_from_the_correction_stream():
    first = random.Random("4:correction").random() < 0.5
    brain = ScriptedBrain(john_correcting(0.5), seed=4)
    for text in [*FLOW[:4], "I have your last name as Smith, is that correct?"]:
        assert (await brain.reply(text, [])).corrections == ()
    assert bool((await brain.reply(WRONG_CONFIRM, [])).corrections) == first


async def test_default_correction_probability_always_corrects():
    assert JOHN.behaviours.correction.probability == 1.0
    brain = ScriptedBrain(JOHN, seed=9)
    for _ in range(10):
        assert (await brain.reply(WRONG_CONFIRM, [])).corrections == ("last_name",)


# --- anticipate: what the caller blurts out when it barges in -------------------------------


def test_anticipate_states_the_goal_facts_in_order_then_nothing():
    brain = ScriptedBrain(JOHN, seed=1)
    replies = []
    for _ in FACT_ORDER:
        replies.append(brain.anticipate())
        brain.said(replies[-1])
    assert [r.intent for r in replies] == list(FACT_ORDER)
    assert [r.facts for r in replies] == [(fact,) for fact in FACT_ORDER]
    assert all(r.source == "scripted" and not r.end_call for r in replies)
    assert JOHN.facts["reason"] in replies[0].text
    assert "John" in replies[1].text and "Smith" in replies[2].text
    assert find_amount(replies[3].text) == 250
    assert brain.goal_met and brain.anticipate() is None


@pytest.mark.parametrize("persona", list_personas(), ids=lambda p: p.id)
def test_anticipation_is_an_interruption_not_a_backchannel(persona):
    brain = ScriptedBrain(persona, seed=2)
    while (reply := brain.anticipate()) is not None:
        assert reply.text.startswith("Sorry, ")
        assert reply.text not in BACKCHANNELS and len(reply.text.split()) >= 4
        brain.said(reply)


async def test_anticipate_skips_facts_already_given_and_is_only_a_preview():
    brain = ScriptedBrain(JOHN, seed=1)
    await brain.reply("What is your first name?", [])
    reason = brain.anticipate()
    assert reason.intent == "reason" and brain.facts_given == {"first_name"}  # not said yet
    brain.said(reason)
    assert brain.facts_given == {"first_name", "reason"}
    brain.said(last := brain.anticipate())
    assert last.intent == "last_name"
    await brain.reply("What amount of money is this about?", [])
    assert brain.goal_met and brain.anticipate() is None


async def test_anticipate_is_deterministic_and_does_not_shift_the_replies():
    async def call(seed: int, interrupt: bool) -> tuple[list[str], list[str]]:
        brain = ScriptedBrain(JOHN, seed=seed)
        blurts, replies = [], []
        for text in FLOW:
            if interrupt and (blurt := brain.anticipate()) is not None:
                blurts.append(blurt.text)
                brain.said(blurt)
            replies.append((await brain.reply(text, [])).text)
        return blurts, replies

    for seed in range(5):
        blurts, replies = await call(seed, interrupt=True)
        assert (blurts, replies) == await call(seed, interrupt=True)
        assert replies == (await call(seed, interrupt=False))[1]
    firsts = {ScriptedBrain(JOHN, seed=seed).anticipate().text for seed in range(20)}
    assert len(firsts) > 1  # the seed picks among phrasings


def test_said_counts_a_spoken_interruption_once():
    brain = ScriptedBrain(JOHN, seed=1)
    blurt = brain.anticipate()
    brain.said(blurt)
    assert brain.facts_given == {"reason"}
    assert brain.anticipate().intent == "first_name"


async def test_fallback_keeps_facts_given_in_step_with_its_brain():
    fallback = ScriptedBrain(JOHN, seed=1)
    brain = _BrokenBrain(JOHNS, fallback=fallback)
    await brain.reply("How can I help you today?", [])
    assert fallback.facts_given == brain.facts_given == {"reason"}
    blurt = brain.anticipate()  # no interruption of its own: the fallback's
    assert blurt.intent == "first_name"
    brain.said(blurt)
    assert fallback.facts_given == brain.facts_given == {"reason", "first_name"}


def test_a_rambler_adds_asides_after_the_answer_and_others_never_do():
    rambler = find_persona("rambler-robert")
    brain = ScriptedBrain(rambler, seed=3)
    reply = brain.decide("What is your last name?")
    said = [aside for aside in rambler.asides if aside in reply.text]
    assert said  # verbosity 1.0: always
    assert reply.text.index("Davis") < reply.text.index(said[0])
    assert reply.aside == said[0]  # the session puts it on the timeline
    assert reply.facts == ("last_name",)
    plain = ScriptedBrain(JOHN, seed=3).decide("What is your last name?")
    assert not any(aside in plain.text for aside in rambler.asides)


def test_a_question_in_the_same_sentence_as_a_read_back_is_answered():
    # Whisper ran the read-back and the next question together, without a full stop.
    from callers.scenario import facts_for, resolve_scenario

    maria = find_persona("hesitant-maria")
    brain = ScriptedBrain(maria, 1, facts_for(resolve_scenario("restaurant-booking"),
                                              maria.facts))
    assert brain.classify("Thank you. I have your name as Maria Garcia for how many people.") \
        == "party_size"


def test_a_misheard_full_name_is_spelled_word_by_word():
    from callers.scenario import facts_for, resolve_scenario

    maria = find_persona("hesitant-maria")
    brain = ScriptedBrain(maria, 1, facts_for(resolve_scenario("restaurant-booking"),
                                              maria.facts))
    reply = brain.decide("I have your name as Maria Garza. For how many people?")
    assert reply.text.startswith("No, it's Maria Garcia, M-A-R-I-A G-A-R-C-I-A.")


@pytest.mark.parametrize(("agent_text", "intent"), [
    ("Hello, thanks for calling Demo Bank. How can I help you today?", "reason"),
    ("I can help with that. What is your first name?", "first_name"),
    # Whisper's "first main": a new question nothing recognised, not the reason asked again
    ("I can help with that. What is your first main?", "other"),
    ("Thanks for calling. How can I help you? Please tell me.", "reason"),
])
def test_an_opener_phrase_loses_to_a_later_question_even_an_unrecognised_one(agent_text, intent):
    assert classify_intent(agent_text) == intent


@pytest.mark.parametrize("persona", list_personas(), ids=lambda p: p.id)
def test_rehearsed_lines_are_the_answers_to_the_scenarios_questions_in_order(persona):
    questions = ["How can I help you today?", "What is your first name?", "And your last name?",
                 "What amount of money is this about?"]
    rehearsing = ScriptedBrain(persona, seed=11)
    lines = rehearsing.rehearse()
    real = [asyncio.run(rehearsing.reply(q, [])).text for q in questions]
    assert lines == real  # spoken ahead: every answer is a cache hit
    # rehearsing does not move the brain's own seeded choices
    fresh = ScriptedBrain(persona, seed=11)
    assert real == [asyncio.run(fresh.reply(q, [])).text for q in questions]
    assert ScriptedBrain(persona, seed=11).rehearse() == lines


@pytest.mark.parametrize("persona", list_personas(), ids=lambda p: p.id)
def test_the_replies_that_state_no_fact_are_among_the_stock_lines_spoken_ahead(persona):
    questions = ["What is your first name?", "And your last name?",
                 "What amount of money is this about?", "Is that correct?",
                 "Is there anything else?", "How was this call for you today?", "Goodbye!"]
    stock = ScriptedBrain(persona, seed=3).stock_lines()
    assert len(stock) == len(set(stock)) and not any("{" in line for line in stock)
    for seed in range(6):  # each seed picks its own phrasings
        brain = ScriptedBrain(persona, seed=seed)
        replies = [asyncio.run(brain.reply(q, [])) for q in questions]
        stating_nothing = [r.text for r in replies if not r.facts and not r.corrections]
        assert stating_nothing and set(stating_nothing) <= set(stock), stating_nothing
