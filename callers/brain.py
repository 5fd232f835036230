"""What the caller says next: the Brain interface and the offline ScriptedBrain policy.

Both work for any scenario: the facts of a call (callers.scenario.CallFacts) say what the
caller knows, how each fact is asked for and how it is said; callers.facts does the typed
work (speaking a date, finding a read-back, comparing values).
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from callers import facts as typed
from callers.facts.words import plain
from callers.persona import Persona
from callers.scenario import DEFAULT_SCENARIO, CallFact, CallFacts, facts_for, resolve_scenario

# What an agent may ask that is not a fact. A fact's question ends the latest in the
# utterance wins (agents acknowledge first and ask last: "Thanks John. And your last name?").
GENERIC_QUESTIONS = {
    "confirmation": r"is (?:that|this|it) (?:correct|right)|correct|did i get (?:that|it) right"
                    r"|can you confirm|please confirm|confirm that",
    "feedback": r"how was (?:this|the|your) (?:call|experience)|how did i do|rate (?:this|the)"
                r"|feedback|satisfied",
    "anything_else": r"anything else",
    "goodbye": r"good ?bye|bye|have a (?:nice|great|good|wonderful) (?:day|evening)|take care",
}
# "Who am I speaking with?" asks for the whole name when a scenario has a first and last name.
FULL_NAME = r"your full name|your name|who am i speaking|who is calling|(?:first and last|full) name"
_CLOSING = re.compile(rf"\b(?:{GENERIC_QUESTIONS['goodbye']}|thanks? (?:you )?for calling)\b")

# Personal facts are "my ...", others "the ...".
_PERSONAL = {"name", "spelled", "phone", "email", "date"}
_TEMPLATES = {  # (terse, chatty) per kind of fact; {v} the value as spoken, {w} the fact's words
    "personal": (["{v}.", "Sure, {v}."], ["My {w} is {v}.", "Sure, my {w} is {v}."]),
    "other": (["{v}.", "It's {v}."], ["The {w} is {v}.", "It's {v}, please."]),
    "choice": (["{v}.", "{v}, please."], ["I'd like {v}, please.", "{v}, please."]),
    "yes_no": (["{v}"], ["{v}"]),
}
_INTERRUPTIONS = {
    "personal": ["Sorry, my {w} is {v}.", "Sorry, my {w} would be {v}."],
    "other": ["Sorry, the {w} is {v}.", "Sorry, it's {v}."],
}
_PHRASES: dict[str, tuple[list[str], list[str]]] = {
    "full_name": (["{first} {last}.", "Sure, {first} {last}."],
                  ["My name is {first} {last}.", "Sure, my name is {first} {last}."]),
    "confirmation": (["Yes.", "Yes, that's right."],
                     ["Yes, that's correct.", "Yes, that's all correct, thank you."]),
    "feedback": (["It was fine, thanks.", "Good, thanks."],
                 ["It was good, you were very helpful.", "Pretty good, thank you for your help."]),
    "goodbye": (["Bye!", "Thanks, bye."], ["Thank you, bye!", "Thanks for your help, bye."]),
    "anything_else": (["No, that's all, thanks."], ["No, that's everything, thank you."]),
    "other": (["Sorry, could you repeat that?"],
              ["Sorry, I didn't catch that. Could you repeat it?"]),
}


def facts_stated(text: str, facts: CallFacts) -> tuple[str, ...]:
    """Facts whose value the text states, by the same typed matching as grading."""
    stated = []
    for item in facts:
        try:
            heard = typed.find(item.type, text, expected=item.value, options=item.spec.options)
            if heard is not None and typed.same(item.type, item.value, heard, fuzzy=True,
                                                options=item.spec.options):
                stated.append(item.name)
        except ValueError:
            continue
    return tuple(sorted(stated))


@dataclass
class Reply:
    """One caller turn as decided by a brain."""

    text: str  # what to say ("" = stay silent)
    end_call: bool = False  # the caller hangs up after saying text
    intent: str = ""  # what the brain thought the agent asked: a fact's name or a generic key
    source: str = "scripted"
    latency_ms: float = 0.0
    facts: tuple[str, ...] = ()  # facts this reply states
    corrections: tuple[str, ...] = ()  # facts the agent read back wrong, corrected here
    fallback_reason: str = ""  # why the brain's own decision was replaced ("" = it wasn't)
    aside: str = ""  # an off-topic remark the reply includes (a rambler's)
    speak_after_ms: float | None = None  # after the agent stopped (None: the persona's timing)
    audio: str | None = None  # a recorded turn (WAV) to play instead of synthesizing text


def default_facts(persona: Persona) -> CallFacts:
    """The shipped card-dispute scenario with the persona's own case."""
    return facts_for(resolve_scenario(DEFAULT_SCENARIO), persona.facts, persona.id)


def says_goodbye(agent_text: str) -> bool:
    """The agent closes the conversation ("Goodbye!", "Thanks for calling, have a nice day")."""
    return bool(_CLOSING.search(plain(agent_text)))


class Questions:
    """Which fact (or generic question) an agent utterance asks for."""

    def __init__(self, facts: CallFacts) -> None:
        self.facts = facts
        names = {f.name: f for f in facts if f.type == "name"}
        self.full_name = ("first_name" in names and "last_name" in names)

    def classify(self, agent_text: str) -> str:
        """A fact's name, "full_name", a GENERIC_QUESTIONS key, "confirmation" for a bare
        read-back, or "other" (nothing recognised)."""
        matches = self._matches(agent_text)
        # Opening questions ("How can I help?") lose to any other question in the utterance,
        # and to a later question nothing recognised: in "I can help with that. What is your
        # first main?" (Whisper's "name") the agent asks something new, not the reason again.
        last_question = self._last_question_start(agent_text)
        real = [m for m in matches if not self._is_opener(m[1])] or [
            m for m in matches if m[0] > last_question]
        if real:
            return max(real)[1]
        if typed.read_backs(agent_text, self.facts.typed_facts, self.facts.phrases):
            return "confirmation"
        return "other"

    @staticmethod
    def _asks_whole_name(text: str) -> bool:
        return (re.search(rf"\b(?:{FULL_NAME})\b", text) is not None
                and re.search(r"\b(?:first|last|sur|family|given) ?name", text) is None)

    @staticmethod
    def _last_question_start(agent_text: str) -> int:
        """Where the last sentence ending in "?" starts, in _matches' offsets (-1: none)."""
        start, offset = -1, 0
        for sentence in re.split(r"(?<=[.?!;])\s+", agent_text):
            if sentence.rstrip().endswith("?"):
                start = offset
            offset += len(plain(sentence)) + 1
        return start

    def _is_opener(self, key: str) -> bool:
        return key in self.facts.names and self.facts[key].spec.opener

    def _matches(self, agent_text: str) -> list[tuple[int, str]]:
        """(end of match, key) for every question asked; a fact not where it is read back."""
        found: list[tuple[int, str]] = []
        offset = 0
        for sentence in re.split(r"(?<=[.?!;])\s+", agent_text):
            text = plain(sentence)
            # A fact read back in this sentence is not asked for in it ("I have your name as
            # Maria, for how many people?" asks the party size).
            read = typed.read_backs(sentence, self.facts.typed_facts, self.facts.phrases)
            asked = [(offset + m.end(), item.name) for item in self.facts if item.name not in read
                     for p in item.patterns for m in re.finditer(p, text)]
            if asked:
                if self.full_name and self._asks_whole_name(text):  # not just the first name
                    asked = [(end, "full_name" if key == "first_name" else key)
                             for end, key in asked]
                found += asked
            for key, pattern in GENERIC_QUESTIONS.items():
                found += [(offset + m.end(), key) for m in re.finditer(rf"\b(?:{pattern})\b",
                                                                       text)]
            offset += len(text) + 1
        return found


class Brain(ABC):
    """Decides replies; reply() owns timing, the timeout and the fallback, subclasses decide."""

    def __init__(self, facts: CallFacts, *, timeout_s: float | None = None,
                 fallback: Brain | None = None) -> None:
        self.call_facts = facts
        self.questions = Questions(facts)
        self.timeout_s = timeout_s
        self.fallback = fallback
        self._facts_given: set[str] = set()

    @property
    def goal_facts(self) -> frozenset[str]:
        """The facts the goal needs the agent to have been told (the scenario's required)."""
        return self.call_facts.required

    @property
    def facts_given(self) -> set[str]:
        """Which facts the caller has said so far."""
        return set(self._facts_given)

    @property
    def goal_met(self) -> bool:
        """True once every required fact was given."""
        return self.goal_facts <= self._facts_given

    def classify(self, agent_text: str) -> str:
        """What the agent asked: a fact's name (the first name for "your name?"), a generic
        question (GENERIC_QUESTIONS), "confirmation" for a bare read-back, or "other"."""
        key = self.questions.classify(agent_text)
        return "first_name" if key == "full_name" else key

    async def reply(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        """The caller's next turn after the agent said agent_text; history is [(speaker, text)]."""
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(self._decide(agent_text, history), self.timeout_s)
        except Exception as e:  # TimeoutError too; CancelledError is not an Exception and passes
            if self.fallback is None:
                raise
            result = await self.fallback._decide(agent_text, history)
            result.fallback_reason = "timeout" if isinstance(e, TimeoutError) else (
                f"{type(e).__name__}: {e}")
        result.latency_ms = (time.perf_counter() - start) * 1000.0
        self._record_facts(result.facts)
        return result

    def anticipate(self) -> Reply | None:
        """What the caller would blurt out if it interrupted the agent now: the next required
        fact not yet given (scenario order), or None when all were. A preview: call said() if
        it is spoken (the agent may stop talking first, and then it never is)."""
        return self._anticipate()

    def rehearse(self) -> list[str]:
        """The lines this caller expects to say, to be spoken ahead into the TTS cache while
        the agent talks; only a brain that knows its words ahead returns any."""
        return []

    def stock_lines(self) -> list[str]:
        """Replies worded the same in every call (feedback, goodbye...), spoken ahead after
        rehearse()'s: cached per voice, they cost once per host rather than once per call."""
        return []

    def said(self, reply: Reply) -> None:
        """Record that reply was spoken: its facts count as given (again is harmless)."""
        self._record_facts(reply.facts)

    async def aclose(self) -> None:
        """Release what the brain holds (an HTTP client); the default holds nothing."""

    def _record_facts(self, facts: tuple[str, ...]) -> None:
        # The fallback learns what was said whoever said it, so that when it takes a turn (or
        # an interruption) it neither repeats a fact nor skips one.
        self._facts_given.update(facts)
        if self.fallback is not None:
            self.fallback._record_facts(facts)

    @abstractmethod
    async def _decide(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        """The brain's own decision, without timing or fallback."""

    def _anticipate(self) -> Reply | None:
        """The brain's own interruption; by default its fallback's (None without one)."""
        return self.fallback._anticipate() if self.fallback is not None else None


def _capital(text: str) -> str:
    """A sentence as said: capitalised, and "p.m.." from a template's period made "p.m."."""
    text = re.sub(r"\.(?:\s*\.)+", ".", text)
    return text[:1].upper() + text[1:]


def _words(name: str) -> str:
    return name.replace("_", " ")


def _kind(item: CallFact) -> str:
    if item.type in ("choice", "yes_no"):
        return item.type
    return "personal" if item.type in _PERSONAL else "other"


class ScriptedBrain(Brain):
    """Offline default: a deterministic, seeded, goal-driven policy. Not an LLM."""

    def __init__(self, persona: Persona, seed: int, facts: CallFacts | None = None,
                 **kwargs) -> None:
        super().__init__(facts or default_facts(persona), **kwargs)
        self.persona = persona
        self.seed = seed
        self._rng = random.Random(seed)
        # Own streams, so correcting or interrupting does not shift the phrasing choices.
        self._correction_rng = random.Random(f"{seed}:correction")
        self._interruption_rng = random.Random(f"{seed}:anticipate")
        self._aside_rng = random.Random(f"{seed}:asides")
        self._unclear_in_a_row = 0
        # Patient callers ask to repeat more often before giving up.
        self.max_repeats = 1 + round(persona.temperament.patience * 4)

    async def _decide(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        return self.decide(agent_text)

    def decide(self, agent_text: str) -> Reply:
        """The scripted reply to one agent utterance (advances the seeded phrasing choice)."""
        return self._reply_to(self.questions.classify(agent_text), agent_text)

    def rehearse(self) -> list[str]:
        """The answers to the scenario's required facts asked in the scenario's order, decided
        by a copy of this brain: the same seeded words as the real answers when the agent asks
        in that order (this brain's own choices are untouched; another order gives other words,
        and what was spoken ahead goes unused)."""
        twin = copy.deepcopy(self)
        lines = []
        for item in self.call_facts:
            if item.spec.required and item.name not in twin.facts_given:
                reply = twin._reply_to(item.name, "")
                twin._record_facts(reply.facts)
                lines.append(reply.text)
        return lines

    def stock_lines(self) -> list[str]:
        """Every phrasing of the replies that state no fact (which one a call says is seeded)."""
        return list(dict.fromkeys(_capital(line) for key, (terse, chatty) in _PHRASES.items()
                                  if key != "full_name" for line in (*terse, *chatty)))

    def _reply_to(self, key: str, agent_text: str) -> Reply:
        corrections = self._corrections(agent_text)
        if key == "other" and not corrections:
            self._unclear_in_a_row += 1
            if self._unclear_in_a_row > self.max_repeats:
                return Reply("Sorry, I'll call back later. Bye.", end_call=True, intent="other")
        else:
            self._unclear_in_a_row = 0
        parts = [self._correction_text(i, name) for i, name in enumerate(corrections)]
        stated: set[str] = set(corrections)
        if not (corrections and key in ("confirmation", "other")):
            text, facts = self._answer(key)
            parts.append(text)
            stated.update(facts)
        aside = self._aside() if key in self.call_facts.names or key == "full_name" else ""
        if aside:
            parts.append(aside)  # after the answer: the agent must pick the fact out of it
        intent = "first_name" if key == "full_name" else key
        return Reply(" ".join(parts), intent=intent, facts=tuple(sorted(stated)),
                     corrections=tuple(corrections), aside=aside)

    def _answer(self, key: str) -> tuple[str, tuple[str, ...]]:
        """The answer to one question, and the facts it states."""
        if key in self.call_facts.names:
            return self._say_fact(self.call_facts[key]), (key,)
        if key == "full_name":
            first, last = self.call_facts["first_name"], self.call_facts["last_name"]
            return self._pick(_PHRASES["full_name"], first=first.value,
                              last=last.value), ("first_name", "last_name")
        if key == "anything_else" and not self.goal_met:
            missing = self._next_missing()  # "Yes: ..." the fact the agent never asked for
            if missing is not None:
                return f"Yes. {self._say_fact(missing)}", (missing.name,)
        return self._pick(_PHRASES[key]), ()

    def _pick(self, options: tuple[list[str], list[str]], **fields: str) -> str:
        terse, chatty = options
        chosen = chatty if self._rng.random() < self.persona.temperament.verbosity else terse
        return _capital(self._rng.choice(chosen).format(**fields))

    def _spoken(self, item: CallFact) -> str:
        return typed.speak(item.type, item.value, rng=self._rng,
                           verbosity=self.persona.temperament.verbosity,
                           options=item.spec.options)

    def _say_fact(self, item: CallFact) -> str:
        if item.spec.say:
            return _capital(self._rng.choice(item.spec.say).format(value=self._spoken(item)))
        return self._pick(_TEMPLATES[_kind(item)], v=self._spoken(item), w=_words(item.name))

    def _next_missing(self) -> CallFact | None:
        return next((f for f in self.call_facts if f.spec.required
                     and f.name not in self._facts_given), None)

    def _aside(self) -> str:
        """An off-topic remark (a rambler's), drawn from its own stream, or ""."""
        asides = self.persona.asides
        if not asides or self._aside_rng.random() >= self.persona.temperament.verbosity:
            return ""
        return self._aside_rng.choice(asides)

    def _anticipate(self) -> Reply | None:
        item = self._next_missing()
        if item is None:
            return None
        rng = self._interruption_rng
        value = typed.speak(item.type, item.value, rng=rng, options=item.spec.options)
        if item.spec.say:
            said = rng.choice(item.spec.say).format(value=value)
            keep = said.startswith(("I ", "I'm", "I'd"))
            text = "Sorry, " + (said if keep else said[:1].lower() + said[1:])
        else:
            kind = "personal" if item.type in _PERSONAL else "other"
            text = rng.choice(_INTERRUPTIONS[kind]).format(v=value, w=_words(item.name))
        return Reply(text, intent=item.name, facts=(item.name,))

    def _corrections(self, agent_text: str) -> list[str]:
        """The wrong read-backs this turn corrects: all of them with the persona's correction
        probability, else none (the caller lets them pass). One draw per turn that has any."""
        wrong = [name for name in typed.wrong_read_backs(
                     agent_text, self.call_facts.typed_facts, self.call_facts.phrases)
                 # "I couldn't update the order" is no read-back of a yes/no answer: a caller
                 # that "corrected" it would contradict itself.
                 if self.call_facts[name].type != "yes_no"]
        p = self.persona.behaviours.correction.probability
        if wrong and self._correction_rng.random() >= p:
            return []
        return wrong

    def _correction_text(self, index: int, name: str) -> str:
        item = self.call_facts[name]
        lead = "No, it's" if index == 0 else "And it's"
        if item.type == "name":  # spelled out, word by word: the agent misheard the sound
            spelled = " ".join("-".join(word.upper()) for word in item.value.split())
            return f"{lead} {item.value}, {spelled}."
        return f"{lead} {typed.speak(item.type, item.value, options=item.spec.options)}."
