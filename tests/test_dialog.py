"""The reference agent's dialog: flow, read-backs, re-prompts, corrections and fault knobs."""

from __future__ import annotations

import json

import pytest

from callers.language import extract_name, find_amount, names_match
from reference_agent.dialog import MAX_REPROMPTS, AgentReply, Dialog, misheard_name

HAPPY_TURNS = [
    "I'm calling about a refund.",
    "My first name is John.",
    "Smith, S-M-I-T-H.",
    "Two hundred fifty dollars.",
    "It was great, thanks.",
]


def _talk(dialog: Dialog, turns: list[str]) -> list[AgentReply]:
    dialog.opening()
    return [dialog.hear(t) for t in turns]


def test_happy_path_asks_each_question_reads_back_and_says_goodbye():
    dialog = Dialog()
    assert dialog.opening() == "Hello, thanks for calling Acme Bank. How can I help you today?"
    assert dialog.stage == "reason"
    replies = [dialog.hear(t) for t in HAPPY_TURNS]

    assert [r.text for r in replies] == [
        "I can help with that. What is your first name?",
        "Thanks, John. And your last name?",
        "I have your last name as Smith. What amount of money is this about?",
        "Got it, two hundred fifty dollars. Before you go, how was this call for you today?",
        "Thank you for your feedback. Goodbye!",
    ]
    assert [r.hang_up for r in replies] == [False, False, False, False, True]
    assert dialog.stage == "done"
    assert dialog.entities == {
        "reason": "a refund",
        "first_name": "John",
        "last_name": "Smith",
        "amount": "250",
        "feedback": "It was great, thanks.",
    }


def test_stage_and_current_question_follow_the_flow():
    dialog = Dialog()
    dialog.opening()
    seen = [(dialog.stage, dialog.current_question())]
    for turn in HAPPY_TURNS:
        dialog.hear(turn)
        seen.append((dialog.stage, dialog.current_question()))
    assert seen == [
        ("reason", "How can I help you today?"),
        ("first_name", "What is your first name?"),
        ("last_name", "What is your last name?"),
        ("amount", "What amount of money is this about?"),
        ("feedback", "How was this call for you today?"),
        ("done", ""),
    ]


def test_state_is_json_and_reports_entities_stage_and_done():
    dialog = Dialog()
    _talk(dialog, HAPPY_TURNS[:3])
    state = json.loads(json.dumps(dialog.state()))
    assert state["stage"] == "amount"
    assert state["done"] is False
    assert state["entities"] == {"reason": "a refund", "first_name": "John", "last_name": "Smith"}
    dialog.hear(HAPPY_TURNS[3])
    dialog.hear(HAPPY_TURNS[4])
    assert dialog.state()["done"] is True


def test_entities_is_a_copy():
    dialog = Dialog()
    _talk(dialog, HAPPY_TURNS[:2])
    dialog.entities["first_name"] = "Mallory"
    assert dialog.entities["first_name"] == "John"


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("I'm calling about a refund.", "a refund"),
        ("Hi, I'd like to dispute a charge.", "dispute a charge"),
        ("Uh, yeah, it's about my credit card.", "my credit card"),
        ("Lost card", "Lost card"),
    ],
)
def test_reason_is_stored_without_the_lead_in(said, reason):
    dialog = Dialog()
    _talk(dialog, [said])
    assert dialog.entities["reason"] == reason


@pytest.mark.parametrize(
    ("said", "canonical", "spoken"),
    [
        ("It's about $19.50.", "19.50", "nineteen point five dollars"),
        ("twelve hundred", "1200", "one thousand two hundred dollars"),
        ("uh, 75 bucks", "75", "seventy five dollars"),
    ],
)
def test_amount_is_stored_canonical_and_read_back_in_words(said, canonical, spoken):
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:3], said])
    assert dialog.entities["amount"] == canonical
    assert replies[-1].text.startswith(f"Got it, {spoken}.")


def test_unclear_answer_is_reprompted_then_understood():
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:2], "Uh, um.", "Smith."])
    assert replies[2] == AgentReply("Sorry, I didn't catch that. What is your last name?")
    assert dialog.stage == "amount"
    assert dialog.entities["last_name"] == "Smith"


def test_after_two_reprompts_the_agent_moves_on_without_the_entity():
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:3], "Hmm.", "Let me think.", "I don't know."])
    reprompts = [r.text for r in replies[3:3 + MAX_REPROMPTS]]
    assert reprompts == ["Sorry, I didn't catch that. What amount of money is this about?"] * 2
    assert replies[-1].text == "Let's go on. How was this call for you today?"
    assert dialog.stage == "feedback"
    assert "amount" not in dialog.entities
    dialog.hear("Fine.")
    assert dialog.state()["done"] is True


def test_correction_after_name_read_back_updates_and_repeats_the_pending_question():
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:2], "Smash.", "No, it's Smith, S-M-I-T-H."])
    assert replies[-1].text == (
        "Sorry about that. I have your last name as Smith. What amount of money is this about?"
    )
    assert dialog.entities["last_name"] == "Smith"
    assert dialog.stage == "amount"
    dialog.hear("250 dollars")
    assert dialog.entities["amount"] == "250"


def test_correction_after_amount_read_back_updates_the_amount():
    dialog = Dialog()
    correction = "No, that's wrong, it's three hundred."
    replies = _talk(dialog, [*HAPPY_TURNS[:3], "two fifty", correction])
    assert replies[-1].text == (
        "Sorry about that. I have the amount as three hundred dollars. "
        "How was this call for you today?"
    )
    assert dialog.entities["amount"] == "300"
    assert dialog.stage == "feedback"


def test_bare_rejection_asks_for_the_entity_again():
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:2], "Smash.", "No, that's wrong."])
    assert replies[-1].text == "Sorry about that. What is your last name?"
    assert dialog.stage == "last_name"
    reply = dialog.hear("Smith.")
    assert reply.text == "I have your last name as Smith. What amount of money is this about?"


def test_negative_feedback_is_feedback_not_a_correction():
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:4], "No complaints, it was fine."])
    assert replies[-1].hang_up
    assert dialog.entities["amount"] == "250"
    assert dialog.entities["feedback"] == "No complaints, it was fine."


def test_corrections_are_capped_so_the_call_ends():
    dialog = Dialog(mishear={"last_name"})
    _talk(dialog, [*HAPPY_TURNS[:3]] + ["No, it's Smith."] * 5)
    # Two corrections are taken; after that "No, it's Smith" is an (unclear) amount answer.
    assert dialog.stage == "feedback"
    assert "amount" not in dialog.entities


def test_mishear_amount_is_consistently_wrong_in_entities_state_and_read_back():
    dialog = Dialog(mishear={"amount"})
    replies = _talk(dialog, HAPPY_TURNS[:4])
    assert dialog.entities["amount"] == "350"
    assert dialog.state()["entities"]["amount"] == "350"
    assert replies[-1].text.startswith("Got it, three hundred fifty dollars.")
    assert find_amount(replies[-1].text) == 350
    assert dialog.entities["last_name"] == "Smith"  # only the chosen entity is misheard


def test_mishear_last_name_is_consistently_wrong_in_entities_state_and_read_back():
    dialog = Dialog(mishear={"last_name"})
    replies = _talk(dialog, HAPPY_TURNS[:3])
    wrong = dialog.entities["last_name"]
    assert not names_match(wrong, "Smith")
    assert dialog.state()["entities"]["last_name"] == wrong
    assert replies[-1].text == (
        f"I have your last name as {wrong}. What amount of money is this about?"
    )
    assert extract_name(replies[-1].text) == wrong


def test_mishear_also_applies_to_corrections():
    dialog = Dialog(mishear={"amount"})
    _talk(dialog, [*HAPPY_TURNS[:4], "No, it's two hundred fifty."])
    assert dialog.entities["amount"] == "350"


@pytest.mark.parametrize(
    "name", ["Smith", "Johnson", "Garcia", "Nguyen", "Brown", "Okafor", "Lee", "Walsh", "Parker"]
)
def test_misheard_name_is_deterministic_and_never_matches_the_truth(name):
    assert misheard_name(name) == misheard_name(name)
    assert not names_match(misheard_name(name), name)


def test_unknown_mishear_slot_is_rejected_naming_the_flows_slots():
    with pytest.raises(ValueError, match="party_size") as error:
        Dialog(mishear={"party_size"})
    assert "reason, first_name, last_name, amount" in str(error.value)
    assert "card_dispute" in str(error.value)


def test_mishear_first_name_is_now_a_knob_too():
    dialog = Dialog(mishear={"first_name"})
    replies = _talk(dialog, HAPPY_TURNS[:2])
    assert not names_match(dialog.entities["first_name"], "John")
    assert replies[-1].text == f"Thanks, {dialog.entities['first_name']}. And your last name?"


@pytest.mark.parametrize("n", [1, 3, 5])
def test_drop_after_turns_hangs_up_without_goodbye_on_the_nth_turn(n):
    dialog = Dialog(drop_after_turns=n)
    replies = _talk(dialog, HAPPY_TURNS)
    assert [r.hang_up for r in replies[: n - 1]] == [False] * (n - 1)
    assert replies[n - 1] == AgentReply("", hang_up=True)
    assert dialog.dropped
    assert dialog.state()["done"] is False
    assert dialog.state()["dropped"] is True
    # The dropped turn is not understood: only the turns before it are.
    assert len(dialog.entities) == n - 1


def test_hear_after_the_end_stays_silent():
    dialog = Dialog()
    _talk(dialog, HAPPY_TURNS)
    assert dialog.hear("Hello?") == AgentReply("", hang_up=True)
    assert dialog.state()["turns"] == 5


# --- hesitation fillers before the answer ("Um, ... Smith.") ---------------------------------

@pytest.mark.parametrize(
    ("answer", "name"),
    [("Um, Smith.", "Smith"), ("Uh, Smith.", "Smith"), ("Hmm, Smith.", "Smith"),
     ("Umm... Smith.", "Smith"), ("Uhh, Smith.", "Smith"), ("Hmmm, uh, Smith.", "Smith"),
     ("Uhm, it's Smith.", "Smith"), ("Mm-hmm, Smith.", "Smith"), ("Erm. Smith", "Smith"),
     ("Um, Emma.", "Emma")],
)
def test_filler_before_a_last_name_is_not_the_name(answer, name):
    dialog = Dialog()
    reply = _talk(dialog, [*HAPPY_TURNS[:2], answer])[-1]
    assert dialog.entities["last_name"] == name
    assert reply.text.startswith(f"I have your last name as {name}.")


@pytest.mark.parametrize("answer", ["Hmm, John.", "Um, John.", "Uhh... John", "Uh-huh, John."])
def test_filler_before_a_first_name_is_not_the_name(answer):
    dialog = Dialog()
    reply = _talk(dialog, [HAPPY_TURNS[0], answer])[-1]
    assert dialog.entities["first_name"] == "John"
    assert reply.text == "Thanks, John. And your last name?"


@pytest.mark.parametrize(
    "answer", ["Uh, two hundred fifty dollars.", "Um, 250 dollars.", "Hmm, two fifty."])
def test_filler_before_an_amount(answer):
    dialog = Dialog()
    _talk(dialog, [*HAPPY_TURNS[:3], answer])
    assert dialog.entities["amount"] == "250"


@pytest.mark.parametrize("filler", ["Um", "Uh", "Hmm", "Umm", "Hm", "Uhh", "Mm-hmm"])
def test_a_filler_alone_is_reprompted_not_taken_as_a_name(filler):
    dialog = Dialog()
    reply = _talk(dialog, [*HAPPY_TURNS[:2], f"{filler}..."])[-1]
    assert reply == AgentReply("Sorry, I didn't catch that. What is your last name?")
    assert "last_name" not in dialog.entities


def test_reason_after_a_stretched_filler_drops_the_lead_in():
    dialog = Dialog()
    _talk(dialog, ["Umm, I'm calling about a refund."])
    assert dialog.entities["reason"] == "a refund"


def test_correction_after_a_stretched_filler_is_a_correction():
    dialog = Dialog()
    replies = _talk(dialog, [*HAPPY_TURNS[:2], "Smash.", "Umm, no, it's Smith."])
    assert replies[-1].text.startswith("Sorry about that. I have your last name as Smith.")
    assert dialog.entities["last_name"] == "Smith"


@pytest.mark.parametrize("ask", ["Sorry, could you repeat that?", "Pardon?",
                                 "Sorry, I didn't catch that. Could you say that again?"])
def test_a_caller_who_missed_the_question_hears_it_again_and_it_is_not_an_answer(ask):
    dialog = Dialog(flow="clinic_appointment")
    question = dialog.current_question()
    reply = dialog.hear(ask)
    assert reply.text == f"Of course. {question}"
    assert dialog.entities == {} and dialog.current_question() == question
    dialog.hear("My name is Anna Lee.")
    assert dialog.entities["name"] == "Anna Lee"
