"""The reference agent's flows as pure state machines: transcripts in, replies and entities out."""

from __future__ import annotations

import json

import pytest

from callers.facts import TYPES, Fact, equal, read_backs, wrong_read_backs
from orchestration.cli import main
from reference_agent.dialog import (
    MAX_REPROMPTS,
    AgentReply,
    Dialog,
    full_name,
    hear_value,
    misheard,
    say_value,
)
from reference_agent.flows import DEFAULT_FLOW, FLOWS, build_flow, flow_names, get_flow

ANYTHING_ELSE = "Is there anything else I can help you with?"

# What a caller says, and what the agent must understand from it, per flow.
CALLS = {
    "restaurant_booking": [
        ("It's John Smith.", "John Smith"),
        ("Four people.", "4"),
        ("December fifth.", "--12-05"),
        ("Seven thirty p.m.", "19:30"),
        ("Four one five, five five five, zero one three four.", "4155550134"),
    ],
    "clinic_appointment": [
        ("Maria Garcia.", "Maria Garcia"),
        ("May third, nineteen eighty.", "1980-05-03"),
        ("It's A, B, seven, X, two.", "AB7X2"),
        ("January tenth.", "--01-10"),
        ("Two thirty p.m.", "14:30"),
    ],
    "order_status": [
        ("A B 7 X 2.", "AB7X2"),
        ("j dot smith at example dot com", "j.smith@example.com"),
        ("Express, please.", "express"),
        ("Yes, please.", "yes"),
    ],
    "card_dispute": [
        ("I'm calling about a refund.", "a refund"),
        ("My first name is John.", "John"),
        ("Smith, S-M-I-T-H.", "Smith"),
        ("Two hundred fifty dollars.", "250"),
    ],
}


def _talk(flow: str, turns: list[str], **knobs) -> tuple[Dialog, list[AgentReply]]:
    dialog = Dialog(flow=flow, **knobs)
    dialog.opening()
    return dialog, [dialog.hear(t) for t in turns]


def _answers(flow: str) -> list[str]:
    return [said for said, _ in CALLS[flow]]


def _facts(flow: str) -> list[Fact]:
    f = get_flow(flow)
    return [Fact.of(s.name, s.type, value, s.options or None)
            for s, (_, value) in zip(f.slots, CALLS[flow], strict=True)]


# --- the flows as data ---------------------------------------------------------------------------

def test_every_flow_builds_and_the_flows_use_every_fact_type():
    assert flow_names()[0] == DEFAULT_FLOW == "card_dispute"
    assert {"restaurant_booking", "clinic_appointment", "order_status"} <= set(flow_names())
    used = {s.type for name in flow_names() for s in get_flow(name).slots}
    assert used == set(TYPES)


def test_an_unknown_flow_names_the_flows():
    with pytest.raises(ValueError, match="card_dispute, restaurant_booking"):
        get_flow("pizza")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["slots"][0].update(type="colour"), "type must be one of"),
        (lambda d: d.update(closing="For {nobody}."), "unknown slots"),
        (lambda d: d["slots"][0].update(colour="red"), "unknown keys"),
        (lambda d: d["slots"].append(dict(d["slots"][0])), "unique"),
    ],
)
def test_a_bad_flow_definition_says_what_is_wrong(change, message):
    data = json.loads(json.dumps(FLOWS["restaurant_booking"]))
    change(data)
    with pytest.raises(ValueError, match=message):
        build_flow("mine", data)


def test_state_reports_entities_stage_done_turns_and_the_flow():
    dialog, _ = _talk("restaurant_booking", _answers("restaurant_booking")[:2])
    state = json.loads(json.dumps(dialog.state()))
    assert state == {"entities": {"name": "John Smith", "party_size": "4"}, "stage": "date",
                     "done": False, "dropped": False, "turns": 2, "flow": "restaurant_booking"}


# --- whole calls: the exact prompts a scenario is written from -----------------------------------

def test_restaurant_booking_happy_path():
    dialog = Dialog(flow="restaurant_booking")
    assert dialog.opening() == ("Hello, thanks for calling Luigi's. I can book a table for you. "
                                "What is your full name?")
    assert dialog.slot_type == "full_name"  # Whisper gets the full-name hints
    replies = [dialog.hear(t) for t in [*_answers("restaurant_booking"), "No, that's all."]]
    assert [r.text for r in replies] == [
        "Thank you. I have your name as John Smith. For how many people?",
        "A table for four. What date would you like to come in?",
        "I have the date as the fifth of December. And what time would you like?",
        "I have the time as seven thirty p.m. What phone number can we reach you on?",
        "I have your phone number as four, one, five, five, five, five, zero, one, three, four. "
        "You're booked: a table for four on the fifth of December at seven thirty p.m., under "
        f"the name John Smith. {ANYTHING_ELSE}",
        "Thank you for calling Luigi's. Goodbye!",
    ]
    assert [r.hang_up for r in replies] == [False] * 5 + [True]
    assert dialog.state()["done"] is True
    assert dialog.entities == {name: value for name, (_, value) in zip(
        get_flow("restaurant_booking").slot_names, CALLS["restaurant_booking"], strict=True)} | {
        "feedback": "No, that's all."}


def test_clinic_appointment_happy_path():
    dialog = Dialog(flow="clinic_appointment")
    assert dialog.opening() == ("Hello, you've reached Riverside Clinic. I can help you change "
                                "your appointment. What is your full name?")
    replies = [dialog.hear(t).text for t in [*_answers("clinic_appointment"), "No, thank you."]]
    assert replies == [
        "Thank you. I have your name as Maria Garcia. What is your date of birth?",
        "I have your date of birth as the third of May, nineteen eighty. "
        "What is your patient code? Please spell it out.",
        "I have your patient code as A B seven X two. "
        "What new date would you like for your appointment?",
        "I have the new date as the tenth of January. And what new time would you like?",
        # The closing reads the last value back: no separate read-back of the new time.
        "All set, Maria Garcia. For patient code A B seven X two, the new date is the tenth of "
        f"January and the new time is two thirty p.m. {ANYTHING_ELSE}",
        "Thank you for calling Riverside Clinic. Goodbye!",
    ]
    assert dialog.entities["patient_code"] == "AB7X2"
    assert dialog.entities["date_of_birth"] == "1980-05-03"


def test_order_status_happy_path():
    dialog = Dialog(flow="order_status")
    assert dialog.opening() == ("Hello, this is Northwind order support. "
                                "What is your order number? Please spell it out.")
    replies = [dialog.hear(t).text for t in [*_answers("order_status"), "No."]]
    assert replies == [
        "I have your order number as A B seven X two. "
        "What email address did you use for the order?",
        "I have your email as j dot smith at example dot com. "
        "Would you like standard or express delivery?",
        "Noted, express delivery. Would you like a text message when it ships?",
        "I'll send you a text message when it ships. Your order A B seven X two will ship by "
        "express delivery, and the confirmation goes to j dot smith at example dot com. "
        f"{ANYTHING_ELSE}",
        "Thank you for contacting Northwind. Goodbye!",
    ]
    assert dialog.entities == {"order_number": "AB7X2", "email": "j.smith@example.com",
                               "delivery": "express", "text_updates": "yes", "feedback": "No."}


@pytest.mark.parametrize("flow", flow_names())
def test_current_question_follows_the_slots(flow):
    dialog = Dialog(flow=flow)
    questions = [dialog.current_question()]
    for said in _answers(flow):
        dialog.hear(said)
        questions.append(dialog.current_question())
    f = get_flow(flow)
    assert questions == [s.question for s in f.slots] + [f.feedback_question]


@pytest.mark.parametrize("flow", flow_names())
def test_the_agent_reads_back_what_it_understood(flow):
    """Read-backs in words the grader's typed matching finds (callers.facts.read_backs)."""
    dialog = Dialog(flow=flow)
    texts = [dialog.opening()] + [dialog.hear(t).text for t in _answers(flow)]
    facts = _facts(flow)
    heard: dict[str, str] = {}
    for text in texts:
        heard.update(read_backs(text, facts, {"text_updates": ["text message"]}))
        assert wrong_read_backs(text, facts, {"text_updates": ["text message"]}) == []
    read_back = {s.name for s in get_flow(flow).slots if s.read_back}
    assert read_back <= set(heard)


# --- typed hearing -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("flow", "slot", "said", "value"),
    [
        ("restaurant_booking", "name", "Sure, it's John Smith.", "John Smith"),
        ("restaurant_booking", "name", "Um, Maria Garcia, G-A-R-C-I-A.", "Maria Garcia"),
        ("restaurant_booking", "name", "Booking for John Smith please.", "John Smith"),
        ("restaurant_booking", "party_size", "There will be four of us.", "4"),
        ("restaurant_booking", "party_size", "Just two.", "2"),
        ("restaurant_booking", "party_size", "A table for 6, please.", "6"),
        ("restaurant_booking", "date", "The fifth of December, please.", "--12-05"),
        ("restaurant_booking", "date", "December 5th.", "--12-05"),
        ("restaurant_booking", "time", "Seven thirty.", "19:30"),  # inside opening hours
        ("restaurant_booking", "time", "7:30 PM", "19:30"),
        ("restaurant_booking", "time", "Half past seven in the evening.", "19:30"),
        ("restaurant_booking", "time", "Noon.", "12:00"),
        ("restaurant_booking", "phone", "415-555-0134", "4155550134"),
        ("restaurant_booking", "phone", "It's 415 555 0134.", "4155550134"),
        ("restaurant_booking", "phone", "four one five, double five five, oh one three four",
         "4155550134"),
        ("clinic_appointment", "date_of_birth", "May 3rd, 1980.", "1980-05-03"),
        ("clinic_appointment", "patient_code", "A-B-7-X-2", "AB7X2"),
        ("clinic_appointment", "patient_code", "My patient code is AB7X2.", "AB7X2"),
        ("clinic_appointment", "patient_code", "It's A, B, seven, X, two.", "AB7X2"),
        ("clinic_appointment", "new_time", "Ten fifteen.", "10:15"),
        ("clinic_appointment", "new_time", "Two thirty.", "14:30"),
        ("order_status", "email", "It's j.smith@example.com.", "j.smith@example.com"),
        ("order_status", "email", "J. Smith at example.com", "j.smith@example.com"),
        ("order_status", "delivery", "The regular one is fine.", "standard"),
        ("order_status", "delivery", "Next day, please.", "express"),
        ("order_status", "text_updates", "Sure, that would be great.", "yes"),
        ("order_status", "text_updates", "No thanks, I don't need one.", "no"),
        ("card_dispute", "amount", "uh, 75 bucks", "75"),
    ],
)
def test_a_slot_is_heard_by_its_type(flow, slot, said, value):
    assert hear_value(get_flow(flow).slot(slot), said) == value


# --- re-prompts, corrections ---------------------------------------------------------------------

def test_an_unusable_answer_is_reprompted_then_understood():
    _, replies = _talk("restaurant_booking", ["John Smith.", "Hmm.", "Four."])
    assert replies[1] == AgentReply("Sorry, I didn't catch that. For how many people?")
    assert replies[2].text.startswith("A table for four.")


def test_after_two_reprompts_the_agent_moves_on_and_cannot_confirm():
    answers = _answers("restaurant_booking")
    dialog, replies = _talk("restaurant_booking",
                            [*answers[:4], "Hmm.", "Let me think.", "I don't know."])
    assert [r.text for r in replies[4:4 + MAX_REPROMPTS]] == [
        "Sorry, I didn't catch that. What phone number can we reach you on?"] * 2
    assert replies[-1].text == ("I'm sorry, I couldn't complete the booking without all the "
                                f"details. {ANYTHING_ELSE}")
    assert "phone" not in dialog.entities
    assert dialog.stage == "feedback"
    # a slot missing in the middle: "Let's go on." and the next question
    _, replies = _talk("clinic_appointment", ["Maria Garcia.", "Hmm.", "Um.", "I forget."])
    assert replies[-1].text == "Let's go on. What is your patient code? Please spell it out."


@pytest.mark.parametrize(
    ("flow", "at", "correction", "slot", "value", "reply"),
    [
        ("restaurant_booking", 1, "No, it's for six.", "party_size", "6",
         "Sorry about that. A table for six. What date would you like to come in?"),
        ("restaurant_booking", 2, "No, it's December sixth.", "date", "--12-06",
         "Sorry about that. I have the date as the sixth of December. What time would you like?"),
        ("restaurant_booking", 0, "No, it's John Smythe.", "name", "John Smythe",
         "Sorry about that. I have your name as John Smythe. For how many people?"),
        ("clinic_appointment", 2, "No, it's A B 7 X 3.", "patient_code", "AB7X3",
         "Sorry about that. I have your patient code as A B seven X three. "
         "What new date would you like for your appointment?"),
        ("order_status", 1, "No, it's j dot smyth at example dot com.", "email",
         "j.smyth@example.com",
         "Sorry about that. I have your email as j dot smyth at example dot com. "
         "Would you like standard or express delivery?"),
        ("order_status", 2, "No, I said standard.", "delivery", "standard",
         "Sorry about that. Noted, standard delivery. "
         "Would you like a text message when it ships?"),
    ],
)
def test_a_correction_after_a_read_back_updates_the_slot(flow, at, correction, slot, value,
                                                        reply):
    dialog, replies = _talk(flow, [*_answers(flow)[:at + 1], correction])
    assert replies[-1].text == reply
    assert dialog.entities[slot] == value


def test_a_bare_rejection_asks_again_but_a_bare_no_answers_a_yes_no_question():
    dialog, replies = _talk("restaurant_booking", ["John Smith.", "Four.", "No, that's wrong."])
    assert replies[-1].text == "Sorry about that. For how many people?"
    assert dialog.stage == "party_size"
    # After "Noted, express delivery. Would you like a text message ...?", "No." is the answer.
    dialog, replies = _talk("order_status", [*_answers("order_status")[:3], "No."])
    assert dialog.entities["delivery"] == "express"
    assert dialog.entities["text_updates"] == "no"
    assert replies[-1].text.startswith("Okay, no text message. Your order")


def test_a_yes_no_read_back_is_corrected_to_the_other_answer():
    dialog, replies = _talk("order_status",
                            [*_answers("order_status"), "No, I don't want a text message."])
    assert dialog.entities["text_updates"] == "no"
    assert replies[-1].text == f"Sorry about that. Okay, no text message. {ANYTHING_ELSE}"


@pytest.mark.parametrize(
    ("flow", "correction", "slot", "value"),
    [
        ("restaurant_booking", "No, the date is December sixth.", "date", "--12-06"),
        ("restaurant_booking", "No, December sixth.", "date", "--12-06"),
        ("restaurant_booking", "No, we are six people.", "party_size", "6"),
        ("restaurant_booking", "No, eight p.m.", "time", "20:00"),
        ("restaurant_booking", "No, my name is John Smythe.", "name", "John Smythe"),
        ("clinic_appointment", "No, the new time is three p.m.", "new_time", "15:00"),
        ("clinic_appointment", "No, January eleventh.", "new_date", "--01-11"),
        ("clinic_appointment", "No, the patient code is A B 7 X 3.", "patient_code", "AB7X3"),
        # named, though the closing did not read it: the more specific phrase wins over "date"
        ("clinic_appointment", "No, my date of birth is May 4th, 1980.", "date_of_birth",
         "1980-05-04"),
    ],
)
def test_the_closing_takes_a_correction_of_any_value_and_reads_it_again(flow, correction, slot,
                                                                        value):
    dialog, replies = _talk(flow, [*_answers(flow), correction])
    assert dialog.entities[slot] == value
    assert replies[-1].text.startswith("Sorry about that. ")
    assert replies[-1].text.endswith(ANYTHING_ELSE)
    spoken = say_value(get_flow(flow).slot(slot), value)
    assert spoken in replies[-1].text
    assert dialog.stage == "feedback"
    assert dialog.hear("No, that's all.").hang_up


@pytest.mark.parametrize("answer", ["No.", "No, that's all, thanks.", "No, thank you, have a "
                                    "good one.", "Nope, that's it for today."])
def test_no_to_anything_else_ends_the_call_without_changing_anything(answer):
    dialog, replies = _talk("restaurant_booking", [*_answers("restaurant_booking"), answer])
    assert replies[-1] == AgentReply("Thank you for calling Luigi's. Goodbye!", hang_up=True)
    assert dialog.entities["party_size"] == "4" and dialog.entities["date"] == "--12-05"
    assert dialog.state()["done"] is True


def test_corrections_of_a_slot_are_capped():
    dialog, _ = _talk("restaurant_booking",
                      [*_answers("restaurant_booking")[:3]] + ["No, it's December fifth."] * 4,
                      mishear={"date"})
    assert dialog.entities["date"] == "--12-06"  # the mishearing agent never gets it right
    assert dialog.stage != "date"


# --- --mishear for every slot of every flow ------------------------------------------------------

MISHEAR_CASES = [(flow, slot) for flow in flow_names() for slot in get_flow(flow).slot_names]


@pytest.mark.parametrize(("flow", "slot"), MISHEAR_CASES)
def test_mishear_makes_only_that_slot_wrong_in_state_and_read_back(flow, slot):
    dialog, replies = _talk(flow, _answers(flow), mishear={slot})
    facts = {f.name: f for f in _facts(flow)}
    entities = dialog.state()["entities"]
    for name, fact in facts.items():
        right = equal(fact.type, fact.value, entities[name], fuzzy=True)
        assert right == (name != slot), (name, entities[name])
    spec = get_flow(flow).slot(slot)
    wrong = entities[slot]
    said = _answers(flow)[get_flow(flow).slot_names.index(slot)]
    assert wrong == misheard(spec, hear_value(spec, said))
    if spec.read_back or spec.name in get_flow(flow).closing_slots:
        # the agent says the wrong value, and the grader's read-back matching sees it wrong
        assert any(slot in wrong_read_backs(r.text, list(facts.values()),
                                            {"text_updates": ["text message"]})
                   for r in replies)


@pytest.mark.parametrize(
    ("flow", "slot", "value", "wrong"),
    [
        ("card_dispute", "amount", "250", "350"),
        ("card_dispute", "last_name", "Smith", "Smash"),
        ("card_dispute", "reason", "a refund", "a change of address"),
        ("restaurant_booking", "name", "John Smith", "John Smash"),
        ("restaurant_booking", "party_size", "4", "6"),
        ("restaurant_booking", "date", "--12-05", "--12-06"),
        ("restaurant_booking", "date", "--12-31", "--01-01"),
        ("clinic_appointment", "date_of_birth", "1980-02-28", "1980-02-29"),
        ("restaurant_booking", "time", "19:30", "20:30"),
        ("restaurant_booking", "time", "23:15", "00:15"),
        ("restaurant_booking", "phone", "4155550134", "4156660134"),
        ("restaurant_booking", "phone", "+442079460958", "+442070570958"),
        ("clinic_appointment", "patient_code", "AB7X2", "AB8X2"),
        ("clinic_appointment", "patient_code", "ZZ", "ZA"),
        ("order_status", "email", "j.smith@example.com", "j.smash@example.com"),
        ("order_status", "email", "42@example.com", "42x@example.com"),
        ("order_status", "delivery", "standard", "express"),
        ("order_status", "delivery", "express", "standard"),
        ("order_status", "text_updates", "yes", "no"),
        ("order_status", "text_updates", "no", "yes"),
    ],
)
def test_misheard_values_are_deterministic_and_of_the_slots_type(flow, slot, value, wrong):
    spec = get_flow(flow).slot(slot)
    assert misheard(spec, value) == wrong
    assert not equal(spec.type, value, wrong, fuzzy=True)


def test_mishear_applies_to_corrections_and_a_read_back_correction_of_yes_no():
    dialog, replies = _talk("order_status", [*_answers("order_status")[:3], "Yes, please.",
                                             "No, I do want a text message."],
                            mishear={"text_updates"})
    assert replies[3].text.startswith("Okay, no text message.")
    assert dialog.entities["text_updates"] == "no"  # believed wrong, consistently


def test_an_unknown_mishear_slot_names_the_flow_and_its_slots():
    with pytest.raises(ValueError, match="amount for flow restaurant_booking; expected one of "
                                         "name, party_size, date, time, phone"):
        Dialog(flow="restaurant_booking", mishear={"amount"})


@pytest.mark.parametrize("n", [1, 3, 6])
def test_drop_after_turns_on_any_flow(n):
    dialog, replies = _talk("clinic_appointment", [*_answers("clinic_appointment"), "No."],
                            drop_after_turns=n)
    assert replies[n - 1] == AgentReply("", hang_up=True)
    assert dialog.dropped and not dialog.state()["done"]
    assert len(dialog.entities) == n - 1


# --- the command line ----------------------------------------------------------------------------

def test_agent_flow_must_be_a_known_flow(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["agent", "--flow", "pizza"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'pizza'" in err and "restaurant_booking" in err


def test_agent_mishear_must_be_a_slot_of_some_flow(capsys):
    assert main(["agent", "--flow", "restaurant_booking", "--mishear", "amonut"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["callfleet: error: --mishear amonut: not a slot of any flow; flow "
                     "restaurant_booking has name, party_size, date, time, phone"]


@pytest.mark.parametrize(("heard", "name"), [
    ("It's John Smith.", "John Smith"),
    ("Maria, Garcia.", "Maria Garcia"),  # Whisper's comma where the caller paused
    ("Sure, Anna Lee, please.", "Anna Lee"),
    ("John, please.", "John"),
])
def test_a_whole_name_is_heard_across_whispers_comma(heard, name):
    assert full_name(heard) == name
