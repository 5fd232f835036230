"""Finding typed values in what the agent said, as Whisper wrote it down (case, punctuation and
digits vary: "December 5th", "the fifth of December", "12/5"; "7:30 PM", "seven thirty in the
evening"; "415-555-0134", "four one five, double five..."; "j dot smith at example dot com").

Every finder reads `prep(text)` (number words as digits) and returns candidates with their
span in that text, so read-back detection can look at the words around a value.
"""

from __future__ import annotations

import re

from callers.facts.candidate import Candidate
from callers.facts.codes import _scan_emails, _scan_phones, _scan_spelled
from callers.facts.values import (
    Choices,
    OptionsArg,
    best_reading,
    canonical_number,
    choice_table,
    equal,
    parse,
)
from callers.facts.when import _scan_dates, _scan_times
from callers.facts.words import plain, prep
from callers.language import _NOT_NAMES, canonical_amount, extract_name, is_filler

__all__ = ["Candidate", "find", "phrase_regex", "pick", "scan"]


# --- numbers and money -----------------------------------------------------------------------

_SCALE = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER = re.compile(
    r"(?P<cur>\$\s?)?(?<![\w.,:/])(?<!\d-)(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?![\w:/]|[.,]\d|-\d)"
    r"(?:\s+(?P<scale>hundred|thousand|million|billion)\b)?"
    r"(?:\s*(?P<money>dollars?|bucks?|usd)\b(?:,?\s+(?:and\s+)?(?P<cents>\d{1,2})\s+cents?\b)?"
    r"|\s*(?P<cents_only>cents?)\b)?",
    re.I,
)
_NEXT_WORD = re.compile(r"[\s,]*([A-Za-z%']+)")
# A number followed by these counts something other than an amount or a plain quantity.
_OTHER_UNITS = {
    "minute", "minutes", "min", "mins", "second", "seconds", "hour", "hours", "day", "days",
    "week", "weeks", "month", "months", "year", "years", "percent", "%", "am", "pm", "a", "p",
    "o'clock", "oclock", "o", "times", "th", "st", "nd", "rd", "in", "out", "of",
}


def _scan_numbers(t: str, money: bool) -> list[Candidate]:
    found = []
    for m in _NUMBER.finditer(t):
        value = float(m["num"].replace(",", ""))
        if m["scale"]:
            value *= _SCALE[m["scale"].lower()]
        if m["cents"]:
            value += int(m["cents"]) / 100
        if m["cents_only"]:
            value /= 100
        is_money = bool(m["cur"] or m["money"] or m["cents_only"])
        after = _NEXT_WORD.match(t, m.end())
        unit = after[1].lower() if after else ""
        # "5 minutes" counts something else; "$250" is an amount, not a count.
        other = (not is_money and unit in _OTHER_UNITS) or (is_money and not money)
        canon = canonical_amount(value) if money else canonical_number(value)
        found.append(Candidate((canon,), m.start(), m.end(), is_money, unit, other))
    # "one" stays a word in prep ("a table for one"): a plain quantity, never an amount's cue.
    if not money:
        for m in re.finditer(r"\bone\b", t, re.I):
            after = _NEXT_WORD.match(t, m.end())
            unit = after[1].lower() if after else ""
            found.append(Candidate(("1",), m.start(), m.end(), False, unit,
                                   unit in _OTHER_UNITS))
    return sorted(found, key=lambda c: c.start)

# --- names, yes/no, choices, text --------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def _capital(word: str) -> str:
    return word[0].upper() + word[1:] if word.islower() else word


def _scan_names(t: str) -> list[Candidate]:
    return [Candidate((_capital(m[0]),), m.start(), m.end(), cue=False)
            for m in _NAME_TOKEN.finditer(t)
            if len(m[0]) > 1 and m[0].lower() not in _NOT_NAMES and not is_filler(m[0])]


_YES_WORDS = re.compile(r"\b(?:yes|yeah|yep|yup|correct|right|sure|absolutely|affirmative"
                        r"|indeed|certainly|(?:i|we|you) (?:do|will|are))\b", re.I)
_NO_WORDS = re.compile(r"\b(?:no|nope|nah|not|none|never|negative|without|incorrect"
                       r"|(?:do|does|did|is|are|was|have|has|wo|would|ca|could)n'?t)\b", re.I)


def _scan_yes_no(t: str) -> list[Candidate]:
    found = [Candidate(("yes",), m.start(), m.end(), cue=False) for m in _YES_WORDS.finditer(t)]
    found += [Candidate(("no",), m.start(), m.end(), cue=False) for m in _NO_WORDS.finditer(t)]
    return sorted(found, key=lambda c: c.start)


def phrase_regex(phrase: str) -> re.Pattern:
    """A phrase matched as words in any case and punctuation ("date of birth" finds
    "Date-of-birth")."""
    words = plain(prep(phrase)).split()
    if not words:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?<![A-Za-z0-9])" + r"[\W_]+".join(map(re.escape, words))
                      + r"(?![A-Za-z0-9])", re.I)


def _scan_choices(t: str, choices: Choices) -> list[Candidate]:
    found = []
    for option, phrases in choices:
        for phrase in phrases:
            found += [Candidate((option,), m.start(), m.end(), cue=False)
                      for m in phrase_regex(phrase).finditer(t)]
    return sorted(found, key=lambda c: (c.start, -(c.end - c.start)))


def _scan_text(t: str, expected: str | None) -> list[Candidate]:
    if not expected:
        return []
    return [Candidate((expected,), m.start(), m.end(), cue=False)
            for m in phrase_regex(expected).finditer(t)]


def _email_without_at(t: str, expected: str | None) -> list[Candidate]:
    """Whisper often drops the "at" of a spoken address: "j dot smith at example dot com" comes
    out "j.smith.example.com". Only the expected address is looked for so (its "@" heard as a
    dot, every other character as said): a read-back check, not a way to find new addresses."""
    if not expected or "@" not in expected:
        return []
    heard = re.escape(expected.lower().replace("@", "."))
    return [Candidate((expected.lower(),), m.start(), m.end(), cue=False)
            for m in re.finditer(rf"(?<![\w.@]){heard}(?![\w@]|\.\w)", t, re.I)]


# --- the API ---------------------------------------------------------------------------------

def scan(type: str, text: str, options: OptionsArg = None, *, expected: str | None = None,
         prepped: bool = False) -> list[Candidate]:
    """Every candidate value of one type in text, in order, with spans into prep(text)."""
    t = text if prepped else prep(text)
    if type in ("number", "money"):
        taken = [c for kind in ("date", "time", "phone") for c in scan(kind, t, prepped=True)
                 if c.cue]
        return [c for c in _scan_numbers(t, type == "money")
                if not any(o.start <= c.start and c.end <= o.end for o in taken)]
    if type == "date":
        return _scan_dates(t)
    if type == "time":
        dates = _scan_dates(t)
        return [c for c in _scan_times(t)
                if not any(d.start <= c.start < d.end for d in dates)]
    if type == "phone":
        return _scan_phones(t)
    if type == "email":
        return _scan_emails(t) + _email_without_at(t, expected)
    if type == "spelled":
        return _scan_spelled(t)
    if type == "name":
        return _scan_names(t)
    if type == "yes_no":
        return _scan_yes_no(t)
    if type == "choice":
        return _scan_choices(t, choice_table(options))
    if type == "text":
        return _scan_text(t, expected)
    raise ValueError(f"unknown fact type {type!r}")


def pick(type: str, candidates: list[Candidate], expected: str | None) -> str | None:
    """The value among candidates: the reading that is the expected value if one is, else the
    first candidate whose words mark its type, else the first."""
    if expected is not None:
        for c in candidates:
            for v in c.values:
                if equal(type, expected, v, fuzzy=True):
                    # A code's "O" and "0" sound alike: what was said is the expected one.
                    return expected if type == "spelled" else v
    for c in candidates:
        if c.cue:
            return best_reading(type, expected, c.values)
    return best_reading(type, expected, candidates[0].values) if candidates else None


def find(type: str, text: str, expected=None, options: OptionsArg = None) -> str | None:
    """The value of this type the agent said in text (canonical), or None. With expected (the
    fact's value), a reading that matches it wins: "seven thirty" is 19:30 for a 19:30 fact,
    "Smyth" is found for "Smith" (compare with same() to tell a near miss)."""
    choices = choice_table(options) if type == "choice" else ()
    exp = parse(type, expected, choices) if expected is not None else None
    if type == "name":
        return _find_name(text, exp)
    if type == "text":
        return _find_text(text, exp)
    if type == "yes_no":
        return _find_yes_no(text)
    candidates = [c for c in scan(type, text, choices, expected=exp) if not c.other]
    return pick(type, candidates, exp)


def _find_name(text: str, expected: str | None) -> str | None:
    if expected:
        words = _scan_names(prep(text))
        n = len(expected.split())
        for k in range(len(words) - n + 1):
            heard = " ".join(w.value for w in words[k:k + n])
            if equal("name", expected, heard, fuzzy=True):
                return heard
    return extract_name(text)


def _find_text(text: str, expected: str | None) -> str | None:
    if not expected:
        return None
    if phrase_regex(expected).search(prep(text)):
        return expected
    words, want = plain(text).split(), plain(expected)
    n = len(want.split())
    for k in range(max(1, len(words) - n + 1)):
        window = " ".join(words[k:k + n])
        if equal("text", want, window, fuzzy=True):
            return window
    return None


def _find_yes_no(text: str) -> str | None:
    from callers.language import is_negation

    if is_negation(text):
        return "no"
    found = _scan_yes_no(prep(text))
    return found[0].value if found else None
