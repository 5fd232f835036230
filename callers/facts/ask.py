"""Which phrases ask for a fact: the scenario's own, words from the fact's name, and defaults per
type ("date_of_birth" of type date: "date of birth", "birthday", "born", "what day", "date")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from callers.facts.values import OptionsArg, check_type, choice_table
from callers.facts.words import name_words, plain

# Phrases per word of a fact's name: "date_of_birth" has "birth", so "born", "birthday".
NAME_WORD_PHRASES: dict[str, tuple[str, ...]] = {
    "birth": ("date of birth", "birth date", "birthday", "born", "dob"),
    "dob": ("date of birth", "birth date", "birthday", "born", "dob"),
    "birthday": ("date of birth", "birthday", "born"),
    "phone": ("phone number", "phone", "telephone", "number to reach you", "callback number",
              "call back number", "contact number", "cell", "mobile"),
    "mobile": ("mobile", "cell", "phone number"),
    "email": ("email", "e mail", "email address"),
    "party": ("how many people", "how many guests", "party size", "size of your party",
              "for how many", "how many in your party", "how many of you", "party of",
              "table for", "people", "guests"),
    "guests": ("how many guests", "how many people", "guests", "people"),
    "people": ("how many people", "people"),
    "first": ("first name", "given name", "forename"),
    "last": ("last name", "surname", "family name"),
    "surname": ("last name", "surname", "family name"),
    "zip": ("zip code", "zip", "postal code", "postcode"),
    "postal": ("postal code", "postcode", "zip code"),
    "reason": ("reason", "calling about", "help you", "help with", "how can i help",
               "how may i help", "assist you", "what can i do for you", "why are you calling",
               "what brings you", "what do you need"),
    "amount": ("amount", "how much"),
    "confirmation": ("confirmation number", "confirmation code", "confirmation"),
    "reference": ("reference number", "reference", "booking reference"),
    "appointment": ("appointment",),
    "reservation": ("reservation", "booking"),
    "booking": ("booking", "reservation"),
}

TYPE_PHRASES: dict[str, tuple[str, ...]] = {
    "name": ("your name", "your full name", "full name", "who am i speaking with",
             "who am i speaking to", "whos calling", "who is calling", "name please"),
    "spelled": ("code", "confirmation number", "confirmation code", "reference number",
                "booking reference", "booking number", "spell"),
    "number": ("how many", "number of"),
    "money": ("amount", "how much", "how many dollars", "cost", "price", "charge", "total",
              "balance"),
    "date": ("date", "what day", "which day", "what date", "which date", "when would you like"),
    "time": ("what time", "which time", "a time", "the time", "time would", "time works",
             "time do you", "time suits", "preferred time", "time of"),
    "phone": ("phone number", "phone", "number to reach you", "callback number",
              "contact number", "telephone", "cell", "mobile"),
    "email": ("email", "e mail", "email address"),
    "yes_no": (),
    "choice": (),
    "text": (),
}
# Name words that say nothing alone ("new_date" -> "date"; "time" alone is too common: "at this
# time"), and name words that make a name fact not the caller's whole name.
_MODIFIERS = {"new", "current", "old", "preferred", "desired", "requested", "your", "the", "of",
              "is", "has", "have", "wants", "want", "needs", "need", "would", "like", "a"}
_TOO_COMMON = {"time", "number", "name", "code", "value", "info", "type", "id", "size"}
_PART_OF_NAME = {"last", "surname", "family", "middle", "maiden"}


def ask_phrases(name: str, type: str, extra_phrases: Iterable[str] = ()) -> list[str]:
    """Plain phrases that ask for the fact, most specific first: the scenario's, the name's
    ("date of birth"), then the type's ("date")."""
    check_type(type)
    words = name_words(name)
    out = [plain(p) for p in extra_phrases]
    if " ".join(words) not in _TOO_COMMON:  # a fact named "time": "at this time" asks nothing
        out.append(" ".join(words))
    core = [w for w in words if w not in _MODIFIERS]
    if core and core != words and " ".join(core) not in _TOO_COMMON:
        out.append(" ".join(core))  # "new_date" -> "date", "has_allergies" -> "allergies"
    if len(core) > 1 and type in ("yes_no", "choice", "text") and core[-1] not in _TOO_COMMON:
        out.append(core[-1])
    for w in words:
        out.extend(NAME_WORD_PHRASES.get(w, ()))
    if not (type == "name" and _PART_OF_NAME & set(words)):
        out.extend(TYPE_PHRASES[type])
    seen: list[str] = []
    for p in out:
        if p and p not in seen:
            seen.append(p)
    return seen


def _regex(phrase: str) -> str:
    return r"\b" + r"\s+".join(re.escape(w) for w in phrase.split()) + r"\b"


def ask_patterns(name: str, type: str, extra_phrases: Iterable[str] = (),
                 options: OptionsArg = None) -> list[str]:
    """Regexes to search in plain(question) (lower case, no punctuation), most specific first.
    A choice is also asked by naming its options: "indoor or outdoor"."""
    patterns = [_regex(p) for p in ask_phrases(name, type, extra_phrases)]
    if type == "choice":
        said = "|".join(_regex(plain(p))[2:-2] for _, ps in choice_table(options) for p in ps)
        if said:
            patterns.append(rf"\b(?:{said})\s+or\b|\bor\s+(?:{said})\b")
    return patterns


def asked_fact(question: str, patterns: Mapping[str, Sequence[str]]) -> str | None:
    """Which fact the question asks for: the match that ends latest wins (agents acknowledge
    first and ask last); at the same end, the fact whose pattern came earlier in its list (more
    specific), then the longer match, then the fact listed first."""
    text = plain(question)
    best: tuple | None = None
    for order, (fact, pats) in enumerate(patterns.items()):
        for rank, pattern in enumerate(pats):
            for m in re.finditer(pattern, text):
                key = (m.end(), -rank, m.end() - m.start(), -order)
                if best is None or key > best[0]:
                    best = (key, fact)
    return best[1] if best else None
