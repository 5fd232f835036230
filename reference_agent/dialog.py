"""The reference agent's conversation as a pure state machine: transcript in, next utterance out.

Generic over a flow (reference_agent/flows.py): it asks each slot's question, takes the value of
the slot's type from the caller's words (callers.facts), reads it back where the flow says so,
takes corrections ("No, it's ..."), re-prompts an unusable answer (twice, then moves on), reads
a closing summary, asks for feedback and says goodbye.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from callers.facts import find, scan, speak
from callers.facts.ask import ask_phrases
from callers.facts.find import phrase_regex
from callers.facts.values import canonical_number, similar_names
from callers.facts.words import digit_word, name_words, prep
from callers.language import (
    _NOT_NAMES,
    FILLER_PATTERN,
    canonical_amount,
    extract_name,
    find_amount,
    is_filler,
    is_negation,
    names_match,
    normalize_name,
    number_to_words,
)
from reference_agent.flows import DEFAULT_FLOW, Flow, Slot, get_flow

MAX_REPROMPTS = 2
# A caller correcting a consistently mishearing agent would otherwise loop forever.
MAX_CORRECTIONS = 2
FEEDBACK, DONE = "feedback", "done"

# Plausible mishearings, each far enough from the truth that names_match() rejects it
# (Smith -> Smyth would pass at the default 0.8 and hide the fault from the evaluation).
_MISHEARD_NAMES = {"smith": "Smash", "johnson": "Jensen", "garcia": "Marsha", "nguyen": "Newman",
                   "brown": "Braun", "jones": "Joyce", "miller": "Muller", "davis": "Dennis"}
_FALLBACK_NAMES = ("Walsh", "Hughes", "Parker", "Fisher", "Keller", "Moreno")

_REASON_LEAD = re.compile(
    rf"^(?:(?:hi|hello|hey|{FILLER_PATTERN}|yeah|yes|so|well|oh|okay|ok|sure)\b[\s,.!]*)*"
    r"(?:(?:i'm|i am)\s+(?:just\s+)?calling\s+(?:about|regarding|because of|because|for|to)\s+"
    r"|(?:it's|it is|this is)\s+(?:about|regarding)\s+"
    r"|(?:i'd like to|i would like to|i want to|i need to)\s+"
    r"|(?:about|regarding)\s+)?",
    re.IGNORECASE,
)
# Words a bare rejection ("No, that's wrong.") is made of: it carries no answer of its own.
# "Sorry, could you repeat that?": the caller missed the question (noise, a cut-off greeting).
# A short turn like this asks again; it is not an answer ("Repeat" is no one's name).
_REPEAT_REQUEST = re.compile(r"\b(repeat|say (that|it) again|come again|pardon)\b", re.I)
REPEAT_REQUEST_MAX_WORDS = 10

_REJECTION_WORDS = {
    "no", "nope", "nah", "that's", "that", "is", "isn't", "it's", "it", "was", "wasn't", "not",
    "wrong", "incorrect", "right", "correct", "actually", "sorry", "quite", "exactly", "uh",
    "um", "oh", "well", "i", "said",
}
# "It's A, B, 7" and "It's j.smith@...": the "s" of a contraction is not a letter of the value.
_CONTRACTION = re.compile(r"\b(it|that|here|there|what|name|code|number|email|mine)['’]s\b",
                          re.IGNORECASE)
# Words before a full name that are not part of it ("Booking for John Smith").
_NOT_FULL_NAME = _NOT_NAMES | {
    "booking", "book", "reservation", "table", "under", "put", "down", "patient", "appointment",
    "here", "speaking", "calling", "full", "yes", "sure", "mine",
}
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


@dataclass
class AgentReply:
    """What the agent says next ("" for nothing), and whether it hangs up after saying it."""

    text: str
    hang_up: bool = False


# --- the deterministic wrong values of --mishear ------------------------------------------------

def misheard_name(name: str) -> str:
    """The deterministic wrong name the agent hears instead of name (never names_match, never
    similar_names); for a full name, the last word is misheard."""
    words = name.split()
    if len(words) > 1:
        return " ".join([*words[:-1], misheard_name(words[-1])])
    if (mapped := _MISHEARD_NAMES.get(normalize_name(name))) is not None:
        return mapped
    start = sum(map(ord, normalize_name(name)))
    for k in range(len(_FALLBACK_NAMES)):
        candidate = _FALLBACK_NAMES[(start + k) % len(_FALLBACK_NAMES)]
        if not names_match(candidate, name) and not similar_names(candidate, name):
            return candidate
    raise AssertionError(name)  # unreachable: the fallbacks are mutually dissimilar


def _next_char(c: str) -> str:
    if c.isdigit():
        return str((int(c) + 1) % 10)
    return chr((ord(c.upper()) - ord("A") + 1) % 26 + ord("A"))


def misheard(slot: Slot, value: str) -> str:
    """The deterministic wrong value of the slot's type the agent hears instead of value."""
    kind = slot.type
    if kind == "name":
        return misheard_name(value)
    if kind == "money":
        return canonical_amount(float(value) + 100)
    if kind == "number":
        return canonical_number(float(value) + 2)
    if kind == "date":
        if value.startswith("--"):  # a month and day: another day of a leap year
            month, day = map(int, value[2:].split("-"))
            nxt = dt.date(2000, month, day) + dt.timedelta(days=1)
            return f"--{nxt.month:02d}-{nxt.day:02d}"
        return (dt.date.fromisoformat(value) + dt.timedelta(days=1)).isoformat()
    if kind == "time":
        hour, minute = map(int, value.split(":"))
        return f"{(hour + 1) % 24:02d}:{minute:02d}"
    if kind == "phone":  # the three digits before the last four ("555" in 415 555 0134)
        digits = list(value)
        for k in range(len(digits) - 7, len(digits) - 4):
            if k >= 0 and digits[k].isdigit():
                digits[k] = _next_char(digits[k])
        return "".join(digits)
    if kind == "spelled":
        k = len(value) // 2
        return value[:k] + _next_char(value[k]) + value[k + 1:]
    if kind == "email":
        local, _, domain = value.partition("@")
        pieces = re.split(r"([._+-])", local)
        for k in range(len(pieces) - 1, -1, -1):
            if pieces[k].isalpha() and len(pieces[k]) >= 2:
                pieces[k] = misheard_name(pieces[k]).lower()
                break
        else:
            pieces.append("x")
        return f"{''.join(pieces)}@{domain}"
    if kind == "yes_no":
        return "no" if value == "yes" else "yes"
    if kind == "choice":
        options = [o for o, _ in slot.options]
        return options[(options.index(value) + 1) % len(options)]
    return slot.mishear_as  # text


# --- hearing a value of a slot's type ------------------------------------------------------------

def _dollars(amount: str) -> str:
    value = float(amount)
    return f"{number_to_words(value)} {'dollar' if value == 1 else 'dollars'}"


def _reason(text: str) -> str | None:
    rest = _REASON_LEAD.sub("", text.strip().replace("’", "'"), count=1)
    rest = rest.strip(" \t\n.,!?;:")
    return rest or None


def _is_bare_rejection(text: str) -> bool:
    words = re.findall(r"[a-z']+", text.lower().replace("’", "'"))
    return all(w in _REJECTION_WORDS or is_filler(w) for w in words)


def full_name(text: str) -> str | None:
    """A whole name in an answer ("It's John Smith." -> "John Smith"): the first name word and
    the capitalised words right after it (up to three words)."""
    words = list(_NAME_WORD.finditer(text))
    for k, m in enumerate(words):
        w = m[0].lower().replace("’", "'")
        if len(m[0]) < 2 or w in _NOT_FULL_NAME or is_filler(w):
            continue
        first = extract_name(m[0])
        if first is None:
            continue
        name = [first]
        for prev, nxt in zip(words[k:], words[k + 1:], strict=False):
            between = text[prev.end():nxt.start()]
            low = nxt[0].lower()
            # "Maria, Garcia.": Whisper puts a comma where the caller paused between the two.
            apart = between.isspace() or (len(name) == 1 and between == ", ")
            if (len(name) >= 3 or not apart or not nxt[0][0].isupper()
                    or low in _NOT_NAMES or is_filler(low)):
                break
            name.append(extract_name(nxt[0]) or nxt[0])
        return " ".join(name)
    return extract_name(text)


def _tidy(sentence: str) -> str:
    """"as seven thirty p.m.." -> "as seven thirty p.m.": a value that ends a sentence."""
    return re.sub(r"\.\.(?!\.)", ".", sentence)


def _in_hours(minutes: int, hours: tuple[int, int]) -> bool:
    return hours[0] <= minutes <= hours[1]


def hear_value(slot: Slot, text: str) -> str | None:
    """The slot's value in the caller's words, canonical (callers.facts), or None."""
    kind = slot.type
    if kind == "text":
        return _reason(text)
    if kind == "name":
        return full_name(text) if slot.full_name else extract_name(text)
    if kind == "money":
        amount = find_amount(text)
        if amount is None:
            return find("money", text)
        return canonical_amount(amount)
    if kind == "number":
        value = find("number", text)
        if value is None and (amount := find_amount(text)) is not None:
            value = canonical_number(amount)  # "Just two.", "four of us"
        return value
    if kind == "choice":
        return find("choice", text, options=slot.options)
    if kind == "yes_no":
        return find("yes_no", text)
    clean = _CONTRACTION.sub(r"\1 is", text)
    value = find(kind, clean)
    if kind == "time" and value is not None and slot.hours is not None:
        hour, minute = map(int, value.split(":"))
        if not _in_hours(hour * 60 + minute, slot.hours) and hour < 12 and \
                _in_hours((hour + 12) * 60 + minute, slot.hours):
            value = f"{hour + 12:02d}:{minute:02d}"  # "seven thirty" at a restaurant
    return value


def say_value(slot: Slot, value: str) -> str:
    """The value as the agent says it, in words the caller's speech recognition writes back."""
    if slot.type == "money":
        return _dollars(value)
    if slot.type in ("name", "text", "choice", "yes_no"):
        return value
    if slot.type == "phone":
        # Digit by digit with commas: Piper then Whisper tiny.en wrote back 7 of 8 numbers so,
        # and 1 of 5 in digit groups ("five five five" came back as "55").
        digits = ", ".join(digit_word(d) for d in value.lstrip("+"))
        return f"plus {digits}" if value.startswith("+") else digits
    return speak(slot.type, value)


def _mention(slot: Slot, text: str) -> tuple[int, int] | None:
    """How specifically text names the slot: (length of the longest phrase of the slot's found,
    its rank in the slot's phrases), or None when it does not name it."""
    phrases = [*slot.phrases, *ask_phrases(slot.name, slot.type), " ".join(name_words(slot.name))]
    if slot.type == "choice":
        phrases += [p for _, ps in slot.options for p in ps]
    t = prep(text)
    found = [(len(p), -k) for k, p in enumerate(phrases) if phrase_regex(p).search(t)]
    if not found:
        return None
    length, rank = max(found)
    return length, -rank


def _marked(slot: Slot, text: str) -> bool:
    """The words themselves mark a value of the slot's type ("December 6th", "8 p.m.")."""
    if slot.type in ("name", "text", "number", "choice", "yes_no"):
        return False
    t = prep(_CONTRACTION.sub(r"\1 is", text))
    return any(c.cue and not c.other for c in scan(slot.type, t, prepped=True))


# --- the dialog -----------------------------------------------------------------------------------

class Dialog:
    """Asks a flow's slots in order; reads back, takes corrections, confirms and says goodbye."""

    def __init__(self, mishear: set[str] | frozenset[str] = frozenset(),
                 drop_after_turns: int | None = None, flow: str | Flow = DEFAULT_FLOW) -> None:
        self.flow = flow if isinstance(flow, Flow) else get_flow(flow)
        unknown = set(mishear) - set(self.flow.slot_names)
        if unknown:
            raise ValueError(f"mishear: unknown slot {', '.join(sorted(unknown))} for flow "
                             f"{self.flow.name}; expected one of "
                             f"{', '.join(self.flow.slot_names)}")
        self._slots = {s.name: s for s in self.flow.slots}
        self._mishear = frozenset(mishear)
        self._drop_after = drop_after_turns
        self._entities: dict[str, str] = {}
        self._stage = self.flow.slots[0].name
        self._turns = 0
        self._reprompts = 0
        # slots the caller may correct now: the one just read back, or those in the closing
        self._readback: tuple[str, ...] = ()
        self._corrections: dict[str, int] = {}
        self._dropped = False

    def opening(self) -> str:
        """The first utterance: greeting plus the first question."""
        return f"{self.flow.greeting} {self.flow.slots[0].question}"

    def current_question(self) -> str:
        """The question the agent is waiting on ("" when done): the caller's STT initial_prompt."""
        return self._question(self._stage)

    @property
    def entities(self) -> dict[str, str]:
        """What the agent understood so far (a copy), slot name -> canonical value."""
        return dict(self._entities)

    @property
    def stage(self) -> str:
        """The slot being asked for, "feedback", or "done" after the goodbye."""
        return self._stage

    @property
    def slot_type(self) -> str | None:
        """The fact type of the slot being asked for (None at feedback and done); "full_name"
        for a name slot whose answer is a whole name."""
        slot = self._slots.get(self._stage)
        if slot is None:
            return None
        return "full_name" if slot.type == "name" and slot.full_name else slot.type

    @property
    def dropped(self) -> bool:
        """Whether the call was dropped by the drop_after_turns knob."""
        return self._dropped

    def state(self) -> dict[str, Any]:
        """The agent-state JSON sent on the data channel."""
        return {"entities": self.entities, "stage": self._stage, "done": self._stage == DONE,
                "dropped": self._dropped, "turns": self._turns, "flow": self.flow.name}

    def hear(self, text: str) -> AgentReply:
        """Take one caller turn (a transcript) and return the agent's next utterance."""
        if self._stage == DONE or self._dropped:
            return AgentReply("", hang_up=True)
        self._turns += 1
        # The drop happens instead of answering the Nth turn: that turn is not understood.
        if self._drop_after is not None and self._turns >= self._drop_after:
            self._dropped = True
            return AgentReply("", hang_up=True)
        if self._readback and is_negation(text):
            reply = (self._correct(self._readback[0], text) if len(self._readback) == 1
                     else self._correct_closing(text))
            if reply is not None:
                return reply
        if (_REPEAT_REQUEST.search(text) and len(text.split()) <= REPEAT_REQUEST_MAX_WORDS
                and self.current_question()):
            return AgentReply(f"Of course. {self.current_question()}")
        return self._answer(text)

    # --- wording ---

    def _question(self, stage: str) -> str:
        if stage == FEEDBACK:
            return self.flow.feedback_question or ""
        return self._slots[stage].question if stage in self._slots else ""

    def _follow_up(self, stage: str) -> str:
        """How the next question is put right after an acknowledgement."""
        if stage == FEEDBACK:
            return self.flow.feedback_follow_up or self._question(stage)
        return (self._slots[stage].follow_up or self._question(stage)) if stage in self._slots \
            else ""

    def _template(self, slot: Slot, key: str) -> str | None:
        template = getattr(slot, key)
        if template is None:
            return None
        value = self._entities[slot.name]
        if isinstance(template, str):
            return _tidy(template.replace("{value}", say_value(slot, value)))
        return template.get(value)  # yes_no, choice: one sentence per value

    def _read_back(self, slot: Slot, corrected: bool = False) -> str:
        text = self._template(slot, "corrected") if corrected else None
        return text or self._template(slot, "read_back") or self._template(slot, "ack") or ""

    def _closing(self) -> str:
        """The confirmation summary ("" without one; the incomplete line when a slot is
        missing)."""
        flow = self.flow
        if not flow.closing:
            return ""
        if not self._closing_complete():
            return flow.incomplete or ""
        return _tidy(re.sub(r"\{(\w+)\}",
                            lambda m: say_value(self._slots[m[1]], self._entities[m[1]]),
                            flow.closing))

    def _closing_complete(self) -> bool:
        """Every slot answered: the closing can confirm (a missing one, even one the closing does
        not name, leaves the booking incomplete)."""
        return bool(self.flow.closing) and all(n in self._entities for n in self.flow.slot_names)

    # --- hearing ---

    def _understand(self, slot: Slot, text: str) -> str | None:
        """The slot's value as this agent understands it (wrong on purpose when misheard)."""
        value = hear_value(slot, text)
        if value is not None and slot.name in self._mishear:
            value = misheard(slot, value)
        return value

    def _understand_correction(self, slot: Slot, text: str) -> str | None:
        if slot.type == "yes_no":  # "No, I do want one": the other answer
            value = "no" if self._entities.get(slot.name) == "yes" else "yes"
            return misheard(slot, value) if slot.name in self._mishear else value
        return self._understand(slot, text)

    def _no_is_an_answer(self) -> bool:
        """A bare "No." answers the pending question: a yes/no slot, or "anything else?"."""
        return self.slot_type == "yes_no" or (self._stage == FEEDBACK and bool(self.flow.closing))

    def _correct(self, name: str, text: str) -> AgentReply | None:
        """Handle "No, it's X" after a read-back; None when the turn is not a correction."""
        if self._corrections.get(name, 0) >= MAX_CORRECTIONS:
            return None
        slot = self._slots[name]
        bare = _is_bare_rejection(text)
        if slot.type == "yes_no":  # any rejection of a yes/no read-back means the other answer
            value = None if bare and self._no_is_an_answer() else \
                self._understand_correction(slot, text)
        else:
            value = self._understand(slot, text)
        if value is None:
            if not bare or self._no_is_an_answer():
                return None  # e.g. "No complaints" answers the feedback question
            # "No, that's wrong." with no new value: ask for the slot again.
            self._corrections[name] = self._corrections.get(name, 0) + 1
            self._stage, self._reprompts, self._readback = name, 0, ()
            return AgentReply(f"Sorry about that. {slot.question}")
        self._corrections[name] = self._corrections.get(name, 0) + 1
        self._entities[name] = value
        return AgentReply(
            f"Sorry about that. {self._read_back(slot, corrected=True)} "
            f"{self.current_question()}".strip())

    def _correct_closing(self, text: str) -> AgentReply | None:
        """A correction after the closing: of the slot the caller names ("No, the date of birth
        is ..."; any slot answered), else of the one slot read back whose type the value's words
        mark ("No, December sixth."); None when it is neither (e.g. "No, that's all")."""
        best: tuple | None = None
        read_back = [self._slots[n] for n in self._readback]
        for order, slot in enumerate(self.flow.slots):
            if slot.name not in self._entities or \
                    self._corrections.get(slot.name, 0) >= MAX_CORRECTIONS:
                continue
            named = _mention(slot, text)
            if named is not None:
                key = (0, -named[0], named[1], order)
            elif slot in read_back and _marked(slot, text) and \
                    not any(s.type == slot.type for s in read_back if s is not slot):
                key = (1, 0, 0, order)
            else:
                continue
            if best is not None and key >= best[0]:
                continue
            value = self._understand_correction(slot, text)
            if value is not None:
                best = (key, slot, value)
        if best is None:
            return None
        _, slot, value = best
        self._corrections[slot.name] = self._corrections.get(slot.name, 0) + 1
        self._entities[slot.name] = value
        said = self._closing() if slot.name in self.flow.closing_slots else \
            self._read_back(slot, corrected=True)
        return AgentReply(f"Sorry about that. {said} {self.current_question()}".strip())

    def _answer(self, text: str) -> AgentReply:
        stage = self._stage
        if stage == FEEDBACK:
            feedback = text.strip() or None
            if feedback is None and self._reprompts < MAX_REPROMPTS:
                self._reprompts += 1
                return AgentReply(f"Sorry, I didn't catch that. {self.current_question()}")
            return self._goodbye(feedback)
        slot = self._slots[stage]
        value = self._understand(slot, text)
        if value is None and self._reprompts < MAX_REPROMPTS:
            self._reprompts += 1
            return AgentReply(f"Sorry, I didn't catch that. {slot.question}")
        if value is not None:
            self._entities[stage] = value
        names = self.flow.slot_names
        last = names.index(stage) == len(names) - 1
        self._stage = names[names.index(stage) + 1] if not last else \
            FEEDBACK if self.flow.feedback_question else DONE
        self._reprompts = 0
        self._readback = (stage,) if value is not None and slot.read_back else ()
        parts = []
        if value is None:
            if not (last and self.flow.closing):
                parts.append("Let's go on.")
        elif not (last and self._closing_complete() and stage in self.flow.closing_slots):
            parts.append(self._read_back(slot))  # (the closing reads the last value back too)
        if last and self.flow.closing:
            parts.append(self._closing())
            if self._closing_complete():
                self._readback = tuple(dict.fromkeys([*self._readback, *self.flow.closing_slots]))
        if self._stage == DONE:
            self._readback = ()
            parts.append(self.flow.goodbye)
            return AgentReply(" ".join(p for p in parts if p), hang_up=True)
        parts.append(self._follow_up(self._stage) if value is not None
                     else self._question(self._stage))
        return AgentReply(" ".join(p for p in parts if p))

    def _goodbye(self, feedback: str | None) -> AgentReply:
        if feedback is not None:
            self._entities[FEEDBACK] = feedback
        self._stage, self._readback = DONE, ()
        text = self.flow.goodbye if feedback or not self.flow.goodbye_no_feedback \
            else self.flow.goodbye_no_feedback
        return AgentReply(text, hang_up=True)
