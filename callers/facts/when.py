"""Dates and times in transcripts: "December 5th", "the fifth of December", "12/5", "Dec. 5";
"7:30 PM", "seven thirty in the evening", "7 o'clock", "19:30", "quarter to eight"."""

from __future__ import annotations

import datetime as dt
import re

from callers.facts.candidate import Candidate
from callers.facts.values import month_day
from callers.facts.words import MONTH_PATTERN, MONTHS, ORDINALS, WEEKDAY_PATTERN

# --- dates -----------------------------------------------------------------------------------

_ORDINAL_WORDS = "|".join(sorted(ORDINALS, key=len, reverse=True))


def _day(p: str) -> str:
    return rf"(?:(?P<{p}d>\d{{1,2}})(?:st|nd|rd|th)?|(?P<{p}dw>{_ORDINAL_WORDS}))"


def _year(p: str) -> str:
    # "2026", "20 26" (twenty twenty-six), "19 80", "20 oh 5"
    return (rf"(?P<{p}y>\d{{4}})|(?P<{p}ya>19|20)\s(?P<{p}yb>\d{{2}})"
            rf"|(?P<{p}yc>19|20)\soh\s(?P<{p}yd>\d)")


_MONTH = rf"(?P<{{p}}m>{MONTH_PATTERN})\.?"
_DATE = re.compile(
    rf"(?:\b(?:{WEEKDAY_PATTERN}),?\s+)?"
    rf"(?:\b{_MONTH.format(p='a')}\s+(?:the\s+)?{_day('a')}(?:,?\s+(?:of\s+)?(?:{_year('a')}))?"
    rf"|\b(?:the\s+)?{_day('b')}\s+(?:(?:of|to)\s+)?{_MONTH.format(p='b')}(?:,?\s+(?:{_year('b')}))?"
    rf"|(?<![\d/.])(?P<cm>\d{{1,2}})/(?P<cd>\d{{1,2}})(?:/(?P<cy>\d{{4}}|\d{{2}}))?(?![\d/])"
    rf"|(?<![\d-])(?P<iy>\d{{4}})-(?P<im>\d{{1,2}})-(?P<id>\d{{1,2}})(?![\d-]))\b",
    re.I,
)


def _year_of(m: re.Match, p: str) -> int | None:
    if m[f"{p}y"]:
        return int(m[f"{p}y"])
    if m[f"{p}ya"]:
        return int(m[f"{p}ya"]) * 100 + int(m[f"{p}yb"])
    if m[f"{p}yc"]:
        return int(m[f"{p}yc"]) * 100 + int(m[f"{p}yd"])
    return None


def _scan_dates(t: str) -> list[Candidate]:
    found = []
    for m in _DATE.finditer(t):
        try:
            if m["iy"]:
                year, month, day = int(m["iy"]), int(m["im"]), int(m["id"])
            elif m["cm"]:
                month, day = int(m["cm"]), int(m["cd"])
                year = int(m["cy"]) if m["cy"] else None
                if year is not None and year < 100:
                    year += 2000 if year < 50 else 1900
            else:
                p = "a" if m["am"] else "b"
                word = m[f"{p}m"]
                if word.lower() == "may" and not word[0].isupper() and p == "a":
                    continue  # "you may 2..." is a verb; Whisper capitalises the month
                month = MONTHS[word.lower()]
                day = int(m[f"{p}d"]) if m[f"{p}d"] else ORDINALS[m[f"{p}dw"].lower()]
                year = _year_of(m, p)
            if year is not None and not 1900 <= year <= 2199:
                year = None
            value = (dt.date(year, month, day).isoformat() if year is not None
                     else month_day(month, day))
        except ValueError:  # February 30th, month 13
            continue
        found.append(Candidate((value,), m.start(), m.end()))
    return found


# --- times -----------------------------------------------------------------------------------

def _mer(n: int) -> str:
    return (rf"(?P<mer{n}>[ap]\.?\s?m\b\.?|in\s+the\s+(?:morning|afternoon|evening)|at\s+night"
            r"|tonight|this\s+(?:morning|afternoon|evening))")


_TIME = re.compile(
    r"(?<![\d:.$])(?:"
    rf"(?P<h1>\d{{1,2}}):(?P<m1>\d{{2}})(?::\d{{2}})?(?!\d)(?:\s*{_mer(1)})?"
    rf"|(?P<h2>\d{{1,2}})\.(?P<m2>\d{{2}})\s*{_mer(2)}"
    rf"|(?P<h3>\d{{1,2}}|one)\s+(?:(?:oh|o|0)\s+(?P<m3a>\d)|(?P<m3>[1-5]\d|00))(?![\d:.,]\d)"
    rf"(?:\s*{_mer(3)})?"
    rf"|(?P<h8>1[0-2]|[1-9])(?P<m8>[0-5]\d)\s*{_mer(8)}"  # Whisper's "705 am"
    rf"|(?P<h4>\d{{1,2}}|one)(?:\s*o'?\s?clock\b(?:\s*{_mer(4)})?|\s*{_mer(5)})"
    rf"|(?:a\s+)?(?P<q>quarter|half|\d{{1,2}}(?:\s+minutes)?)\s+(?P<rel>past|pass|after|to|till|before)"
    rf"\s+(?P<h6>\d{{1,2}}|one|noon|midnight)\b(?:\s*{_mer(6)})?"
    r"|(?:12\s+)?(?P<noon>noon|midday|midnight)"
    # "at 7": a time only by its context (cue False)
    r"|(?<=\bat\s)(?P<h7>\d{1,2})(?!\s*(?:\d|:|o'?\s?clock|[ap]\.?\s?m\b|in\s+the|oh\b"
    r"|dollars?|bucks|percent|%))"
    r")(?![\w])",
    re.I,
)


def _meridiem(word: str | None) -> str | None:
    if not word:
        return None
    w = word.lower()
    return "am" if w.startswith("a") or "morning" in w else "pm"


def _readings(hour: int, minute: int, mer: str | None) -> tuple[str, ...] | None:
    if minute > 59:
        return None
    if mer:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if mer == "pm" else 0)
        return (f"{hour:02d}:{minute:02d}",)
    if hour > 23:
        return None
    if 1 <= hour <= 11:  # "seven thirty": evening or morning; the caller's context decides
        return f"{hour:02d}:{minute:02d}", f"{hour + 12:02d}:{minute:02d}"
    if hour == 12:
        return f"12:{minute:02d}", f"00:{minute:02d}"
    return (f"{hour:02d}:{minute:02d}",)


def _hour(word: str) -> int:
    return 1 if word.lower() == "one" else int(word)


def _scan_times(t: str) -> list[Candidate]:
    found = []
    for m in _TIME.finditer(t):
        cue = True
        if m["h1"]:
            readings = _readings(int(m["h1"]), int(m["m1"]), _meridiem(m["mer1"]))
        elif m["h2"]:
            readings = _readings(int(m["h2"]), int(m["m2"]), _meridiem(m["mer2"]))
        elif m["h3"]:
            minute = int(m["m3a"] if m["m3a"] is not None else m["m3"])
            readings = _readings(_hour(m["h3"]), minute, _meridiem(m["mer3"]))
            cue = bool(m["mer3"] or m["m3a"])  # "7 30" alone may be two numbers
        elif m["h8"]:
            readings = _readings(int(m["h8"]), int(m["m8"]), _meridiem(m["mer8"]))
        elif m["h4"]:
            readings = _readings(_hour(m["h4"]), 0, _meridiem(m["mer4"] or m["mer5"]))
        elif m["q"]:
            q = m["q"].lower()
            minutes = 15 if q == "quarter" else 30 if q == "half" else int(q.split()[0])
            h = m["h6"].lower()
            hour = 12 if h == "noon" else 0 if h == "midnight" else _hour(h)
            if m["rel"].lower() in ("to", "till", "before"):
                hour, minutes = (hour - 1) % 24, 60 - minutes
                if hour == 0 and h not in ("midnight",):
                    hour = 12
            mer = _meridiem(m["mer6"]) or ("pm" if h == "noon" else None)
            readings = _readings(hour if hour else 12, minutes, mer) if h != "midnight" or \
                m["rel"].lower() not in ("past", "after") else (f"00:{minutes:02d}",)
        elif m["h7"]:
            readings, cue = _readings(int(m["h7"]), 0, None), False
        else:
            readings = ("12:00",) if m["noon"].lower() != "midnight" else ("00:00",)
        if readings:
            found.append(Candidate(readings, m.start(), m.end(), cue))
    return found
