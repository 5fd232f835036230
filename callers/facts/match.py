"""Comparing a heard value with the expected one, and finding which facts the agent read back.

A value in an agent's turn counts as a read-back of a fact only with context: the fact's own
phrases before it in the sentence ("your date of birth is ...") or right after it ("4 people"),
words that mark its type ("$250", "December 5th", "7 p.m.", "@"), or, for a plain value, a
confirmation frame ("I have 4, is that right?"). So "anything else I can help with in the next
5 minutes?" reads back nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from callers.facts.ask import TYPE_PHRASES, ask_phrases
from callers.facts.find import _NO_WORDS, Candidate, find, phrase_regex, scan
from callers.facts.values import Fact, OptionsArg, best_reading, choice_table, equal, parse
from callers.facts.words import name_words, plain, prep
from callers.language import _NOT_NAMES, extract_name, is_filler


def same(type: str, expected, heard, *, fuzzy: bool = False, options: OptionsArg = None) -> bool:
    """Whether heard is the expected value. expected: a scenario or canonical value; heard: a
    canonical value, what an agent reported ("Dec 5", "7:30 PM", 250) or a transcript snippet.
    fuzzy: compare as heard through speech recognition (names by spelling and sound)."""
    if heard is None or heard == "":
        return False
    choices = choice_table(options) if type == "choice" else ()
    exp = parse(type, expected, choices)
    value = None
    # "7:30" is 19:30 for a 19:30 fact; "07:30" and "19:30" are what they say.
    if not (type == "time" and isinstance(heard, str) and not re.fullmatch(r"\d\d:\d\d", heard)):
        try:
            value = parse(type, heard, choices)
        except ValueError:
            value = None
    if value is None:
        value = find(type, str(heard), exp, choices)
    return value is not None and equal(type, exp, value, fuzzy=fuzzy)


# --- read-backs --------------------------------------------------------------------------------

_FRAME = re.compile(
    r"\b(?:is (?:that|this|it) (?:right|correct)|(?:that|this) is (?:right|correct)"
    r"|(?:correct|right)\s*\?|to confirm|confirming|i have|i've got|i got|you said|did i get"
    r"|let me (?:repeat|read|confirm)|just to make sure|so that's|so thats)\b",
    re.I,
)
_QUESTION_START = re.compile(
    r"^(?:(?:and|so|ok|okay|great|thanks|thank you|alright|now|also|perfect)\s+)*"
    r"(?:do|does|did|would|will|are|is|have|has|can|could|should|shall|may|what|whats|which"
    r"|how|when|where|who|whos)\b")
_SENTENCE_END = re.compile(r"[?!;]+|\.(?=\s+[A-Z][a-z])|\.\s*$")
_NAME_MARKER_TAIL = r"(?:,?\s+(?:as|is|was|of|would be)\b|:)"


@dataclass
class _Span:
    start: int
    end: int


def _sentences(t: str) -> list[_Span]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(t):
        spans.append(_Span(start, m.end()))
        start = m.end()
    if start < len(t):
        spans.append(_Span(start, len(t)))
    return spans


def _sentence_of(sentences: list[_Span], pos: int) -> _Span:
    return next((s for s in sentences if s.start <= pos < s.end), sentences[-1])


def _phrase_hits(t: str, facts: Sequence[Fact], phrases: Mapping[str, Sequence[str]]):
    """(fact name, start, end) of every fact phrase in t; of overlapping hits the longest win."""
    hits = []
    for f in facts:
        for p in ask_phrases(f.name, f.type, phrases.get(f.name, ())):
            hits += [(f.name, m.start(), m.end()) for m in phrase_regex(p).finditer(t)]
    kept = []
    for h in hits:
        if not any(o[1] <= h[1] and h[2] <= o[2] and (o[2] - o[1]) > (h[2] - h[1]) for o in hits):
            kept.append(h)
    return kept


def _generic_name_phrase(phrase: str) -> bool:
    return phrase in TYPE_PHRASES["name"]


def _name_words_after(text: str, count: int) -> list[str]:
    """The first `count` name words of text ("John Smith, is that right" -> John, Smith)."""
    first = extract_name(text)
    if first is None:
        return []
    words = [first]
    at = text.lower().find(first.lower())
    rest = text[at + len(first):] if at >= 0 else ""
    for m in re.finditer(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", rest):
        if len(words) >= count:
            break
        w = m[0]
        if w.lower() in _NOT_NAMES or is_filler(w) or not w[0].isupper():
            break
        words.append(w)
    return words


def _name_read_backs(text: str, facts: Sequence[Fact],
                     phrases: Mapping[str, Sequence[str]]) -> dict[str, str]:
    found: dict[str, tuple[int, str]] = {}  # fact -> (specificity, name)
    for f in facts:
        part = set(name_words(f.name)) & {"last", "surname", "family"}
        n_words = len(f.value.split())
        own = ask_phrases(f.name, f.type, phrases.get(f.name, ()))
        for phrase in own + [p for p in TYPE_PHRASES["name"] if p not in own]:
            if phrase.startswith(("who", "whos")):
                continue
            generic = _generic_name_phrase(phrase)
            marker = re.compile(r"(?<!\bmy )" + phrase_regex(phrase).pattern + _NAME_MARKER_TAIL,
                                re.I)
            for m in marker.finditer(text):
                rest = re.split(r"[?!;]|\.(?=\s|$)", text[m.end():], maxsplit=1)[0]
                if generic and part:
                    words = _name_words_after(rest, 3)
                    if len(words) < 2:
                        continue  # "your name as John": a first name, not this fact
                    name = words[-1]
                elif generic and n_words == 1:
                    name = (_name_words_after(rest, 1) or [None])[0]
                else:
                    name = " ".join(_name_words_after(rest, n_words)) or None
                if name and (f.name not in found or found[f.name][0] <= (not generic)):
                    found[f.name] = (not generic, name)
    return {k: v for k, (_, v) in found.items()}


def _value_of(fact: Fact, c: Candidate) -> str:
    return best_reading(fact.type, fact.value, c.values)


def read_backs(text: str, facts: Iterable[Fact],
               phrases: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Which facts the agent read back in one utterance, and with what value (canonical):
    {"date_of_birth": "1980-05-03", "last_name": "Smyth"}. phrases: the scenario's extra ask
    phrases per fact name (they mark read-backs too)."""
    facts = list(facts)
    phrases = phrases or {}
    out = _name_read_backs(text, [f for f in facts if f.type == "name"], phrases)
    others = [f for f in facts if f.type != "name"]
    if not others:
        return out
    t = prep(text)
    sentences = _sentences(t)
    hits = _phrase_hits(t, others, phrases)
    framed = bool(_FRAME.search(t))
    by_type: dict[str, int] = {}
    for f in others:
        by_type[f.type] = by_type.get(f.type, 0) + 1
    found: dict[str, list[Candidate]] = {}
    for f in others:
        if f.type == "yes_no":
            value = _yes_no_read_back(t, f, sentences, hits)
            if value:
                out[f.name] = value
            continue
        found[f.name] = scan(f.type, t, f.options, expected=f.value, prepped=True)
    ends = sorted({c.end for cs in found.values() for c in cs if not c.other})
    same_type = {f.name: {g.name for g in others if g.type == f.type} for f in others}
    proposals = []
    for f in others:
        for c in found.get(f.name, ()):
            sent = _sentence_of(sentences, c.start)
            if f.type == "choice" and _lists_options(t, sent, f):
                continue  # "indoor or outdoor?" asks, it does not read back
            # The phrase that names this value: the nearest one before it in its sentence with
            # no other value in between ("a table for 4 on December 5th at 7").
            since = max([e for e in ends if e <= c.start] + [sent.start])
            before = [h for h in hits if since <= h[1] and h[2] <= c.start]
            nearest_end = max((h[2] for h in before), default=None)
            nearest = {h[0] for h in before if h[2] == nearest_end}
            # "4 people", "3 nights": the fact's word right after the value
            after = any(h[0] == f.name and t[c.end:h[1]].isspace() for h in hits)
            value = _value_of(f, c)
            matches = equal(f.type, f.value, value, fuzzy=True)
            if f.name in nearest or after:
                score = 3
            elif c.other or nearest & same_type[f.name]:
                continue  # a count of something else, or another fact's value
            elif c.cue:
                score = 2
            elif framed and f.type in ("number", "money", "spelled", "choice", "text", "time"):
                score = 1
            else:
                continue
            if score < 3 and len(same_type[f.name]) > 1 and not matches:
                continue  # two facts of this type: an unmarked value is either's
            proposals.append((score + 0.5 * matches, -c.start, f, c, value))
    taken: list[Candidate] = []
    for _, _, f, c, value in sorted(proposals, key=lambda p: (p[0], p[1]), reverse=True):
        if f.name in out or any(c.start < o.end and o.start < c.end for o in taken):
            continue
        out[f.name] = value
        taken.append(c)
    return out


def _lists_options(t: str, sent: _Span, fact: Fact) -> bool:
    said = {opt for opt, ps in fact.options for p in ps
            if phrase_regex(p).search(t, sent.start, sent.end)}
    return len(said) > 1


def _yes_no_read_back(t: str, fact: Fact, sentences: list[_Span], hits) -> str | None:
    """"You don't have any allergies, is that right?" -> "no"; a question is no read-back."""
    for h in hits:
        if h[0] != fact.name:
            continue
        sent = _sentence_of(sentences, h[1])
        words = _FRAME.sub(" ", t[sent.start:sent.end])
        if _QUESTION_START.match(plain(words)):
            continue
        return "no" if _NO_WORDS.search(words) else "yes"
    return None


def wrong_read_backs(text: str, facts: Iterable[Fact],
                     phrases: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Facts the agent read back with a wrong value, in the order of facts. Exact comparison
    (a near miss, "Smyth" for "Smith", is what a caller corrects), except that O and 0 sound
    alike in a spelled code."""
    facts = list(facts)
    heard = read_backs(text, facts, phrases)
    return [f.name for f in facts if f.name in heard
            and not equal(f.type, f.value, heard[f.name], fuzzy=f.type == "spelled")]
