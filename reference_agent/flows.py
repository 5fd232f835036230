"""The reference agent's flows, as data: what it asks, in which order, and how it reads back.

These are the agent's own (a real agent's script), not read from the callers' scenarios. A
flow is a greeting, an ordered list of slots, an optional closing (a confirmation summary
read back once every slot is filled), an optional feedback question and a goodbye.

A slot:
    name        the key in the agent's state ("entities")
    type        a fact type from callers.facts (name, spelled, number, money, date, time, phone,
                email, yes_no, choice, text)
    question    how it is asked (also the Whisper prompt, and what re-prompts repeat)
    follow_up   optional: how it is asked right after the previous slot's acknowledgement
    ack         optional: said after the answer when there is no read-back ("Thanks, {value}.")
    read_back   optional: reads the value back ("I have your last name as {value}."); the
                caller may then correct it ("No, it's ..."). For yes_no and choice a mapping
                value -> sentence may be given instead.
    corrected   optional: the read-back after a correction (default: read_back)
    options     choice only: option -> phrases that mean it
    full_name   name only: the answer is a whole name ("John Smith"), not one word
    hours       time only: "HH:MM-HH:MM"; a time said without a.m./p.m. is taken inside them
    phrases     optional: extra words that name the slot when the caller corrects the
                closing ("No, the name is ...")
    mishear_as  text only: what the agent hears instead with --mishear

{value} is the value as the agent says it (callers.facts.speak: "the fifth of December",
"seven thirty p.m.", "four one five, five five five, zero one three four"); in a closing,
{slot_name} is that slot's value said the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callers.facts import TYPES, choice_table

DEFAULT_FLOW = "card_dispute"

ANYTHING_ELSE = "Is there anything else I can help you with?"

FLOWS: dict[str, dict[str, Any]] = {
    # The original flow: its wording and timing are what the card-dispute personas, the e2e
    # tests and tests/test_dialog.py are written against. No closing summary.
    "card_dispute": {
        "greeting": "Hello, thanks for calling Acme Bank.",
        "slots": [
            {"name": "reason", "type": "text", "question": "How can I help you today?",
             "ack": "I can help with that.", "mishear_as": "a change of address"},
            {"name": "first_name", "type": "name", "question": "What is your first name?",
             "ack": "Thanks, {value}."},
            {"name": "last_name", "type": "name", "question": "What is your last name?",
             "follow_up": "And your last name?",
             "read_back": "I have your last name as {value}."},
            {"name": "amount", "type": "money", "question": "What amount of money is this about?",
             "read_back": "Got it, {value}.", "corrected": "I have the amount as {value}."},
        ],
        "closing": None,
        "feedback": {"question": "How was this call for you today?",
                     "follow_up": "Before you go, how was this call for you today?"},
        "goodbye": "Thank you for your feedback. Goodbye!",
        "goodbye_no_feedback": "Thank you for calling. Goodbye!",
    },
    "restaurant_booking": {
        "greeting": "Hello, thanks for calling Luigi's. I can book a table for you.",
        "slots": [
            {"name": "name", "type": "name", "question": "What is your full name?",
             "read_back": "Thank you. I have your name as {value}.",
             "corrected": "I have your name as {value}.", "full_name": True,
             "phrases": ["name", "under the name", "booking under"]},
            {"name": "party_size", "type": "number", "question": "For how many people?",
             "read_back": "A table for {value}.", "phrases": ["people", "table for", "party"]},
            {"name": "date", "type": "date", "question": "What date would you like to come in?",
             "read_back": "I have the date as {value}."},
            {"name": "time", "type": "time", "question": "What time would you like?",
             "follow_up": "And what time would you like?", "hours": "11:00-23:00",
             "read_back": "I have the time as {value}."},
            {"name": "phone", "type": "phone",
             "question": "What phone number can we reach you on?",
             "read_back": "I have your phone number as {value}."},
        ],
        "closing": ("You're booked: a table for {party_size} on {date} at {time}, under the "
                    "name {name}."),
        "incomplete": "I'm sorry, I couldn't complete the booking without all the details.",
        "feedback": {"question": ANYTHING_ELSE},
        "goodbye": "Thank you for calling Luigi's. Goodbye!",
    },
    "clinic_appointment": {
        "greeting": ("Hello, you've reached Riverside Clinic. I can help you change your "
                     "appointment."),
        "slots": [
            {"name": "name", "type": "name", "question": "What is your full name?",
             "read_back": "Thank you. I have your name as {value}.",
             "corrected": "I have your name as {value}.", "full_name": True,
             "phrases": ["name"]},
            {"name": "date_of_birth", "type": "date", "question": "What is your date of birth?",
             "read_back": "I have your date of birth as {value}."},
            {"name": "patient_code", "type": "spelled",
             "question": "What is your patient code? Please spell it out.",
             "read_back": "I have your patient code as {value}."},
            {"name": "new_date", "type": "date",
             "question": "What new date would you like for your appointment?",
             "read_back": "I have the new date as {value}."},
            {"name": "new_time", "type": "time", "question": "What new time would you like?",
             "follow_up": "And what new time would you like?", "hours": "08:00-18:00",
             "read_back": "I have the new time as {value}."},
        ],
        "closing": ("All set, {name}. For patient code {patient_code}, the new date is "
                    "{new_date} and the new time is {new_time}."),
        "incomplete": "I'm sorry, I couldn't change the appointment without all the details.",
        "feedback": {"question": ANYTHING_ELSE},
        "goodbye": "Thank you for calling Riverside Clinic. Goodbye!",
    },
    # No shipped caller scenario is written against this flow in code: a test writes one from
    # these prompts alone.
    "order_status": {
        "greeting": "Hello, this is Northwind order support.",
        "slots": [
            {"name": "order_number", "type": "spelled",
             "question": "What is your order number? Please spell it out.",
             "read_back": "I have your order number as {value}."},
            {"name": "email", "type": "email",
             "question": "What email address did you use for the order?",
             "read_back": "I have your email as {value}."},
            {"name": "delivery", "type": "choice",
             "question": "Would you like standard or express delivery?",
             "options": {"standard": ["regular", "normal", "ground"],
                         "express": ["expedited", "fast", "faster", "next day", "overnight"]},
             "read_back": "Noted, {value} delivery."},
            {"name": "text_updates", "type": "yes_no",
             "question": "Would you like a text message when it ships?",
             "read_back": {"yes": "I'll send you a text message when it ships.",
                           "no": "Okay, no text message."},
             "phrases": ["text", "message"]},
        ],
        "closing": ("Your order {order_number} will ship by {delivery} delivery, and the "
                    "confirmation goes to {email}."),
        "incomplete": "I'm sorry, I couldn't update the order without all the details.",
        "feedback": {"question": ANYTHING_ELSE},
        "goodbye": "Thank you for contacting Northwind. Goodbye!",
    },
}

_FLOW_KEYS = {"greeting", "slots", "closing", "incomplete", "feedback", "goodbye",
              "goodbye_no_feedback"}
_SLOT_KEYS = {"name", "type", "question", "follow_up", "ack", "read_back", "corrected",
              "options", "full_name", "hours", "phrases", "mishear_as"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Slot:
    name: str
    type: str
    question: str
    follow_up: str | None = None
    ack: str | None = None
    read_back: str | Mapping[str, str] | None = None
    corrected: str | Mapping[str, str] | None = None
    options: tuple = ()  # callers.facts choice table, choice only
    full_name: bool = False
    hours: tuple[int, int] | None = None  # minutes of the day, time only
    phrases: tuple[str, ...] = ()
    mishear_as: str = "something else"


@dataclass(frozen=True)
class Flow:
    name: str
    greeting: str
    slots: tuple[Slot, ...]
    closing: str | None = None
    incomplete: str | None = None
    feedback_question: str | None = None
    feedback_follow_up: str | None = None
    goodbye: str = "Goodbye!"
    goodbye_no_feedback: str | None = None
    closing_slots: tuple[str, ...] = field(default=())

    @property
    def slot_names(self) -> list[str]:
        return [s.name for s in self.slots]

    def slot(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _slot(flow: str, data: Mapping[str, Any]) -> Slot:
    where = f"flow {flow}, slot {data.get('name')!r}"
    unknown = set(data) - _SLOT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if data.get("type") not in TYPES:
        raise ValueError(f"{where}: type must be one of {', '.join(TYPES)}")
    kind = data["type"]
    options = choice_table(data.get("options")) if kind == "choice" else ()
    if kind == "choice" and not options:
        raise ValueError(f"{where}: a choice needs options")
    for key in ("read_back", "corrected"):
        template = data.get(key)
        if isinstance(template, Mapping):
            values = {o for o, _ in options} if kind == "choice" else {"yes", "no"}
            if kind not in ("yes_no", "choice") or set(template) != values:
                raise ValueError(f"{where}: {key} as a mapping needs one sentence per value "
                                 f"({', '.join(sorted(values))})")
    hours = None
    if data.get("hours"):
        if kind != "time" or not re.fullmatch(r"\d\d:\d\d-\d\d:\d\d", data["hours"]):
            raise ValueError(f"{where}: hours is a time slot's HH:MM-HH:MM")
        start, end = data["hours"].split("-")
        hours = (_minutes(start), _minutes(end))
    return Slot(
        name=data["name"], type=kind, question=data["question"],
        follow_up=data.get("follow_up"), ack=data.get("ack"), read_back=data.get("read_back"),
        corrected=data.get("corrected"), options=options,
        full_name=bool(data.get("full_name")), hours=hours,
        phrases=tuple(data.get("phrases", ())),
        mishear_as=data.get("mishear_as", "something else"),
    )


def build_flow(name: str, data: Mapping[str, Any]) -> Flow:
    """A Flow from its plain-dict definition; ValueError names the flow and what is wrong."""
    unknown = set(data) - _FLOW_KEYS
    if unknown:
        raise ValueError(f"flow {name}: unknown keys {sorted(unknown)}")
    slots = tuple(_slot(name, s) for s in data["slots"])
    names = [s.name for s in slots]
    if not slots or len(set(names)) != len(names) or {"feedback", "done"} & set(names):
        raise ValueError(f"flow {name}: slot names must be unique and not feedback or done")
    closing = data.get("closing")
    closing_slots = tuple(_PLACEHOLDER.findall(closing or ""))
    missing = set(closing_slots) - set(names)
    if missing:
        raise ValueError(f"flow {name}: the closing names unknown slots {sorted(missing)}")
    feedback = data.get("feedback") or {}
    return Flow(
        name=name, greeting=data["greeting"], slots=slots, closing=closing,
        incomplete=data.get("incomplete"), feedback_question=feedback.get("question"),
        feedback_follow_up=feedback.get("follow_up"), goodbye=data["goodbye"],
        goodbye_no_feedback=data.get("goodbye_no_feedback"), closing_slots=closing_slots,
    )


_BUILT: dict[str, Flow] = {}


def flow_names() -> list[str]:
    return list(FLOWS)


def get_flow(name: str) -> Flow:
    """The named flow; ValueError listing the flows for an unknown name."""
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}: expected one of {', '.join(FLOWS)}")
    if name not in _BUILT:
        _BUILT[name] = build_flow(name, FLOWS[name])
    return _BUILT[name]
