"""Fact types, scenario values parsed to canonical forms, and canonical values compared.

Canonical forms are plain strings, so they go into records and JSON as they are:

| type    | canonical                  | from a scenario file                                |
|---------|----------------------------|-----------------------------------------------------|
| name    | "Smith" (as given)         | any text with a letter                              |
| spelled | "AB7X"                     | "AB7X", "ab-7x", "A B 7 X", 48213                   |
| number  | "4", "2.5"                 | 4, 2.5, "1,250"                                     |
| money   | "250", "12.50"             | 250, "250.00", "$1,250.50"                          |
| date    | "2026-12-05", "--12-05"    | 2026-12-05 (YAML date), "2026-12-05", "--12-05"     |
| time    | "19:30"                    | "19:30", "7:30 pm", "7pm"; YAML's 1170 for 19:30    |
| phone   | "4155550134", "+442079460958" | "+1 415 555 0134", "415-555-0134", "(415) 555-0134" |
| email   | "j.smith@example.com"      | any case                                            |
| yes_no  | "yes" / "no"               | true/false, "yes"/"no"                              |
| choice  | the option as listed       | one of the options (case-insensitive)               |
| text    | the text, spaces collapsed | any text                                            |

A date without a year ("--12-05", ISO 8601's month-day) is a date the speaker gave without one.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jellyfish

from callers.facts.words import plain
from callers.language import canonical_amount, names_match, normalize_name

TYPES = ("name", "spelled", "number", "money", "date", "time", "phone", "email", "yes_no",
         "choice", "text")

# A choice's options: option -> the phrases that mean it (the option itself first).
Choices = tuple[tuple[str, tuple[str, ...]], ...]
OptionsArg = Sequence[str] | Mapping[str, Sequence[str]] | Choices | None


@dataclass(frozen=True)
class Fact:
    """One typed fact: a name ("date_of_birth"), a type from TYPES and a canonical value."""

    name: str
    type: str
    value: str
    options: Choices = field(default=())  # choice only

    @classmethod
    def of(cls, name: str, type: str, value: Any, options: OptionsArg = None) -> Fact:
        """Validate type and value; raises ValueError with what was expected."""
        check_type(type)
        choices = choice_table(options) if type == "choice" else ()
        return cls(name, type, parse(type, value, choices), choices)


def check_type(type: str) -> str:
    if type not in TYPES:
        raise ValueError(f"unknown fact type {type!r}: expected one of {', '.join(TYPES)}")
    return type


def choice_table(options: OptionsArg) -> Choices:
    """Options as ((option, (option, synonym, ...)), ...) from a list or {option: [synonyms]}."""
    if not options:
        return ()
    if isinstance(options, Mapping):
        items = [(str(k), tuple(str(s) for s in (v or ()))) for k, v in options.items()]
    elif all(isinstance(o, tuple) and len(o) == 2 and isinstance(o[1], tuple) for o in options):
        return tuple(options)  # already a table
    else:
        if isinstance(options, str):
            raise ValueError(f"expected a list of options, got {options!r}")
        items = [(str(o), ()) for o in options]
    return tuple((opt, (opt, *[s for s in syns if s != opt])) for opt, syns in items)


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


# --- parsing scenario values -------------------------------------------------------------------

def _number(value: Any, money: bool = False) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        return float(value)
    s = str(value).strip().replace(" ", "")
    if money:
        s = s.removeprefix("$")
    if not re.fullmatch(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+", s):
        raise ValueError
    return float(s.replace(",", ""))


def canonical_number(x: float) -> str:
    """4.0 -> "4", 2.5 -> "2.5", 0.125 -> "0.125"."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _parse_date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError
    s = value.strip()
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", s)
    if m:
        return dt.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    m = re.fullmatch(r"(?:--)?(\d{1,2})-(\d{1,2})", s)
    if m:
        return month_day(int(m[1]), int(m[2]))
    from callers.facts.find import scan  # a date in words: "December 5, 2026"

    found = scan("date", s)
    if len(found) == 1 and found[0].end - found[0].start >= len(s.strip(" .,")) - 2:
        return found[0].values[0]
    raise ValueError


def month_day(month: int, day: int) -> str:
    dt.date(2000, month, day)  # a leap year: Feb 29 is a valid month-day
    return f"--{month:02d}-{day:02d}"


def _parse_time(value: Any) -> str:
    if isinstance(value, dt.time):
        return f"{value.hour:02d}:{value.minute:02d}"
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        # YAML 1.1 reads an unquoted 19:30 as the sexagesimal 1170; a real 19:30 is >= 60.
        if 60 <= value < 24 * 60:
            return f"{value // 60:02d}:{value % 60:02d}"
        raise ValueError
    if not isinstance(value, str):
        raise ValueError
    s = value.strip().lower().replace(".", "")
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?(?::00)?\s*(am|pm)?", s)
    if not m or (m[2] is None and m[3] is None):
        raise ValueError
    hour, minute = int(m[1]), int(m[2] or 0)
    if m[3]:
        if not 1 <= hour <= 12:
            raise ValueError
        hour = hour % 12 + (12 if m[3] == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ValueError
    return f"{hour:02d}:{minute:02d}"


def canonical_phone(digits: str, plus: bool = False) -> str:
    """National digits for NANP numbers ("+1 415..." and "415..." alike), else "+" and all."""
    if len(digits) == 11 and digits[0] == "1":
        return digits[1:]
    if plus and len(digits) != 10:
        return "+" + digits
    return digits


def _parse_phone(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError
    s = str(value).strip()
    if not re.fullmatch(r"\+?[\d\s().\-/]+", s):
        raise ValueError
    digits = re.sub(r"\D", "", s)
    if not 7 <= len(digits) <= 15:
        raise ValueError
    return canonical_phone(digits, s.startswith("+"))


EMAIL = re.compile(r"[a-z0-9](?:[a-z0-9._%+'-]*[a-z0-9])?@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")


def _parse_email(value: Any) -> str:
    s = str(value).strip().lower() if isinstance(value, str) else ""
    if not EMAIL.fullmatch(s):
        raise ValueError
    return s


_YES = {"yes", "y", "true", "on"}
_NO = {"no", "n", "false", "off"}


def _parse_yes_no(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    s = str(value).strip().lower()
    if s in _YES:
        return "yes"
    if s in _NO:
        return "no"
    raise ValueError


def _parse_choice(value: Any, choices: Choices) -> str:
    want = plain(str(value))
    for option, phrases in choices:
        if want in {plain(p) for p in phrases}:
            return option
    raise ValueError


def _parse_spelled(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError
    s = re.sub(r"[\s.\-_/]+", "", str(value)).upper()
    if not re.fullmatch(r"[A-Z0-9]+", s):
        raise ValueError
    return s


def _parse_name(value: Any) -> str:
    s = " ".join(str(value).split()) if isinstance(value, str) else ""
    if not re.search(r"[^\W\d_]", s):
        raise ValueError
    return s


def _parse_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError
    s = " ".join(str(value).split())
    if not s:
        raise ValueError
    return s


_EXPECTED = {
    "name": "a name like Smith",
    "spelled": "a code of letters and digits like AB7X",
    "number": "a number like 4 or 2.5",
    "money": "an amount of money like 250 or 12.50",
    "date": "a date like 2026-12-05",
    "time": "a time like 19:30 or 7:30 pm",
    "phone": "a phone number like +1 415 555 0134",
    "email": "an email address like j.smith@example.com",
    "yes_no": "yes or no",
    "text": "some text",
}


def parse(type: str, value: Any, options: OptionsArg = None) -> str:
    """A scenario value in its type's canonical form. Raises ValueError saying what was
    expected: "expected a date like 2026-12-05, got 'next tuesday'"."""
    check_type(type)
    if type == "choice":
        choices = choice_table(options)
        if not choices:
            raise ValueError("a choice needs its options: expected a list of options")
        try:
            return _parse_choice(value, choices)
        except ValueError:
            listed = ", ".join(repr(o) for o, _ in choices)
            raise ValueError(f"expected one of {listed}, got {_describe(value)}") from None
    try:
        if type in ("number", "money"):
            x = _number(value, type == "money")
            return canonical_amount(x) if type == "money" else canonical_number(x)
        parser = {"date": _parse_date, "time": _parse_time, "phone": _parse_phone,
                  "email": _parse_email, "yes_no": _parse_yes_no, "spelled": _parse_spelled,
                  "name": _parse_name, "text": _parse_text}[type]
        return parser(value)
    except ValueError:
        raise ValueError(f"expected {_EXPECTED[type]}, got {_describe(value)}") from None


# --- comparing canonical values -----------------------------------------------------------------

def similar_names(a: str, b: str) -> bool:
    """Spelling-tolerant and phonetic: Smith ~ Smyth, Reid ~ Reed, Philip ~ Filip, Catherine ~
    Katherine; not John ~ Jane, Smith ~ Smash, Tom ~ Tim. Word by word for several words."""
    wa, wb = a.split(), b.split()
    if len(wa) > 1 or len(wb) > 1:
        if len(wa) == len(wb):
            return all(similar_names(x, y) for x, y in zip(wa, wb, strict=True))
        return names_match(a, b)
    na, nb = normalize_name(a), normalize_name(b)
    if not na or not nb:
        return False
    if na == nb or names_match(na, nb):
        return True
    # Same consonant sounds and close spelling; short names differ by a vowel (Dan, Don).
    return (min(len(na), len(nb)) >= 4 and jellyfish.metaphone(na) == jellyfish.metaphone(nb)
            and jellyfish.jaro_winkler_similarity(na, nb) >= 0.8)


def best_reading(type: str, expected: str | None, readings: Sequence[str]) -> str:
    """The reading that is the expected value, else for a time the one nearest to it (an
    agent's "seven" for a 19:30 fact is 19:00, not 07:00), else the first."""
    if expected is not None:
        for v in readings:
            if equal(type, expected, v, fuzzy=True):
                return expected if type == "spelled" else v  # "O" and "0" sound alike
        if type == "time" and len(readings) > 1:
            def minutes(x: str) -> int:
                h, m = map(int, x.split(":"))
                return h * 60 + m
            return min(readings, key=lambda v: abs(minutes(v) - minutes(expected)))
    return readings[0]


def equal(type: str, expected: str, heard: str, *, fuzzy: bool = False) -> bool:
    """Two canonical values of one type are the same value. fuzzy: as heard through speech
    recognition (names spelling-tolerant and phonetic, O and 0 alike in codes, dots in an
    email's local part ignored, text by similarity)."""
    if expected is None or heard is None:
        return False
    if type == "name":
        if fuzzy:
            return similar_names(expected, heard)
        return normalize_name(expected) == normalize_name(heard) and bool(normalize_name(heard))
    if type in ("number", "money"):
        try:
            return abs(float(expected) - float(heard)) < 0.005
        except ValueError:
            return False
    if type == "date":
        if expected == heard:
            return True
        # A date said without its year is the same date if month and day agree.
        return (expected.startswith("--") or heard.startswith("--")) and \
            expected[-5:] == heard[-5:]
    if type == "spelled":
        if fuzzy:
            return expected.replace("O", "0") == heard.replace("O", "0")
        return expected == heard
    if type == "phone":
        if expected == heard:
            return True
        # The same number with its country code ("+44 20 7946 0958") and without it, in
        # national form ("020 7946 0958"); digits missing elsewhere make another number.
        intl, local = (expected, heard) if expected.startswith("+") else (heard, expected)
        if not intl.startswith("+") or local.startswith("+"):
            return False
        intl, local = intl[1:], local[1:] if local.startswith("0") else local
        return len(local) >= 7 and intl.endswith(local) and 1 <= len(intl) - len(local) <= 3
    if type == "email":
        if fuzzy:
            le, _, de = expected.partition("@")
            lh, _, dh = heard.partition("@")
            return de == dh and re.sub(r"[._-]", "", le) == re.sub(r"[._-]", "", lh)
        return expected == heard
    if type in ("choice", "yes_no"):
        return plain(expected) == plain(heard)
    if type == "text":
        pe, ph = plain(expected), plain(heard)
        if pe == ph:
            return True
        return fuzzy and difflib.SequenceMatcher(None, pe, ph).ratio() >= 0.8
    return expected == heard  # "time": canonical HH:MM
