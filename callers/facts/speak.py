"""How a person says a fact's value, in words Piper reads well and Whisper writes back: dates as
"December fifth", times as "seven thirty p.m.", phone numbers in digit groups, emails as
"j dot smith at example dot com", codes letter by letter, money and numbers in words.

A seeded choice among a few natural variants; `verbosity` is "terse", "chatty", or a float,
the chance of a chatty variant (a persona's temperament.verbosity), drawn from the same rng.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import re

from callers.facts.values import OptionsArg, choice_table, parse
from callers.facts.words import NATO, cardinal_words, digit_word, ordinal_word, year_words

Verbosity = str | float


def _rng(rng: random.Random | int | str | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(0 if rng is None else rng)


def _chatty(rng: random.Random, verbosity: Verbosity) -> bool:
    if verbosity in ("terse", "chatty"):
        return verbosity == "chatty"
    if isinstance(verbosity, int | float) and not isinstance(verbosity, bool):
        return rng.random() < float(verbosity)
    raise ValueError(f"expected verbosity 'terse', 'chatty' or a chance 0-1, got {verbosity!r}")


def number_words(n: float, rng: random.Random | None = None) -> str:
    """250 -> "two hundred and fifty" or (a seeded variant) "two hundred fifty"; 2.5 -> "two
    point five"."""
    sign = "minus " if n < 0 else ""
    n = abs(n)
    whole = int(n)
    words = cardinal_words(whole)
    if rng is not None and rng.random() < 0.5:
        words = words.replace(" and ", " ")
    frac = f"{n:.6f}".rstrip("0").split(".")[1] if not float(n).is_integer() else ""
    if frac:
        words += " point " + " ".join(digit_word(d) for d in frac)
    return (sign + words).replace(",", "")


def money_words(amount: float, rng: random.Random | None = None) -> str:
    """250 -> "two hundred fifty dollars", 12.5 -> "twelve dollars and fifty cents"."""
    cents_total = round(amount * 100)
    dollars, cents = divmod(cents_total, 100)
    parts = []
    if dollars or not cents:
        parts.append(f"{number_words(dollars, rng)} dollar{'' if dollars == 1 else 's'}")
    if cents:
        parts.append(f"{number_words(cents)} cent{'' if cents == 1 else 's'}")
    return " and ".join(parts)


def _date(value: str, rng: random.Random, chatty: bool) -> str:
    if value.startswith("--"):
        year, (month, day) = None, map(int, value[2:].split("-"))
    else:
        year, month, day = map(int, value.split("-"))
    name, nth = calendar.month_name[month], ordinal_word(day)
    forms = [f"{name} {nth}", f"the {nth} of {name}"]
    text = rng.choice(forms)
    if year is not None:
        text += f", {year_words(year)}"
        if chatty and rng.random() < 0.5:
            text = f"{calendar.day_name[dt.date(year, month, day).weekday()]}, {text}"
    return text


def _part_of_day(hour: int) -> str:
    if hour < 12:
        return "in the morning"
    return "in the afternoon" if hour < 18 else "in the evening"


def _time(value: str, rng: random.Random, chatty: bool) -> str:
    hour, minute = map(int, value.split(":"))
    if minute == 0 and hour in (0, 12):
        # Whisper tiny writes a lone "Noon." as "NIN!"; "twelve noon" survives.
        return "twelve noon" if hour == 12 else "midnight"
    h12 = hour % 12 or 12
    ampm = "a.m." if hour < 12 else "p.m."
    said = rng.choice([ampm, _part_of_day(hour)]) if chatty else ampm
    h = cardinal_words(h12)
    if minute == 0:
        forms = [f"{h} {said}"] + ([f"{h} o'clock {_part_of_day(hour)}"] if chatty else [])
    else:
        mm = f"oh {digit_word(minute)}" if minute < 10 else cardinal_words(minute)
        # No "half past seven": through Piper and Whisper tiny it came back "half pass up".
        forms = [f"{h} {mm} {said}"]
    return rng.choice(forms).replace("-", " ")


def _digit_groups(digits: str) -> list[str]:
    """Groups of three, the last one or two of four: 415 555 0134, 555 0100, 020 7946 0958."""
    fours = next(b for b in range(3) if (len(digits) - 4 * b) % 3 == 0 and len(digits) >= 4 * b)
    cut = len(digits) - 4 * fours
    groups = [digits[k:k + 3] for k in range(0, cut, 3)]
    return groups + [digits[cut + 4 * k:cut + 4 * k + 4] for k in range(fours)]


def phone_words(value: str, *, natural: bool = False) -> str:
    """A canonical phone number in digit groups. Default: a comma after each digit and a
    semicolon between groups ("four, one, five; five, five, five; zero, one, three, four"):
    through Piper and Whisper tiny it came back whole for 10 of 12 numbers, where the way
    people run digits together ("four one five, five five five, ...", natural=True) came back
    for 7 of 12: Whisper dropped one of three repeated digits ("415-55-0134")."""
    plus = "plus " if value.startswith("+") else ""
    groups = _digit_groups(value.lstrip("+"))
    if natural:
        return plus + ", ".join(" ".join(digit_word(d) for d in g) for g in groups)
    return plus + "; ".join(", ".join(digit_word(d) for d in g) for g in groups)


_JOINERS = {".": "dot", "_": "underscore", "-": "dash", "+": "plus"}


def _say_piece(piece: str) -> str:
    out = []
    for run in re.findall(r"[a-z]+|\d+", piece):
        if run.isdigit():
            out.append(" ".join(digit_word(d) for d in run))
        elif len(run) <= 2 or not re.search(r"[aeiouy]", run):
            out.append(" ".join(run))  # "j", "uk": letter by letter
        else:
            out.append(run)
    return " ".join(out)


def _email(value: str) -> str:
    local, _, domain = value.partition("@")
    words = [_JOINERS[p] if p in _JOINERS else _say_piece(p)
             for p in re.split(r"([._+-])", local) if p]
    dom = " dot ".join(_say_piece(p) for p in domain.split("."))
    return f"{' '.join(words)} at {dom}"


_NATO_WORD = {letter: word for word, letter in NATO.items()
              if word not in ("alfa", "juliett", "whisky", "x-ray")}


def spell(code: str, *, separator: str = ", ", nato: bool = False) -> str:
    """Letter by letter, digits as words: "AB7X" -> "A, B, seven, X"; with nato, "A as in alpha,
    B as in bravo, seven, X as in xray"."""
    if nato:
        return ", ".join(digit_word(c) if c.isdigit() else f"{c} as in {_NATO_WORD[c]}"
                         for c in code.upper() if c.isalnum())
    return separator.join(digit_word(c) if c.isdigit() else c.upper()
                          for c in code if c.isalnum())


def speak(type: str, value, *, rng: random.Random | int | None = None,
          verbosity: Verbosity = "terse", options: OptionsArg = None) -> str:
    """The value as the caller says it (a phrase, not a sentence: the brain frames it).

    rng: a random.Random (advanced by the choice) or a seed; verbosity: "terse", "chatty" or
    the chance of chatty. Accepts a scenario value or its canonical form."""
    choices = choice_table(options) if type == "choice" else ()
    canon = parse(type, value, choices)
    r = _rng(rng)
    chatty = _chatty(r, verbosity)
    if type in ("name", "text", "choice"):
        return canon
    if type == "spelled":
        # Through Piper and Whisper tiny, letters said without pauses came back best (5 of 10
        # codes whole, against 0-2 of 10 with a comma after each letter); "as in" words, 4 of 10.
        return spell(canon, nato=True) if chatty else spell(canon, separator=" ")
    if type == "number":
        return number_words(float(canon), r)
    if type == "money":
        return money_words(float(canon), r)
    if type == "date":
        return _date(canon, r, chatty)
    if type == "time":
        return _time(canon, r, chatty)
    if type == "phone":
        return phone_words(canon)
    if type == "email":
        return _email(canon)
    if type == "yes_no":
        yes = canon == "yes"
        return r.choice(["Yes, I do.", "Yes, that's right."] if chatty and yes else
                        ["No, I don't.", "No, not at all."] if chatty else
                        ["Yes."] if yes else ["No."])
    raise AssertionError(type)  # parse() rejected unknown types
