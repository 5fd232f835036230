"""The words facts are said with: number, ordinal, month and letter vocabularies, and the one
normalisation every finder reads transcripts through.

Number words come from num2words (speaking) and text2num (reading: "two hundred and fifty"
-> "250", "the fifth" -> "the 5th"), month names from the standard library; nothing here is a
hand-written number table.
"""

from __future__ import annotations

import calendar
import re
from functools import lru_cache

from num2words import num2words
from text_to_num import alpha2digit

# --- numbers ---------------------------------------------------------------------------------

DIGIT_WORDS = {num2words(d): d for d in range(10)}  # "zero" .. "nine"


def digit_word(d: int | str) -> str:
    """One digit as a word: 7 -> "seven"."""
    return num2words(int(d))


def ordinal_word(n: int) -> str:
    """5 -> "fifth", 21 -> "twenty-first"."""
    return num2words(n, to="ordinal")


def cardinal_words(n: int) -> str:
    """250 -> "two hundred and fifty" (num2words' British-style "and")."""
    return num2words(n)


def year_words(year: int) -> str:
    """2026 -> "twenty twenty-six", 2005 -> "two thousand and five", 1980 -> "nineteen eighty"."""
    return num2words(year, to="year")


# "first" .. "thirty-first", with the hyphen or a space: text2num leaves "first" and "second"
# as words (they are also "at first", "one second"), so date readers look them up here.
ORDINALS: dict[str, int] = {}
for _n in range(1, 32):
    _w = ordinal_word(_n)
    ORDINALS[_w] = _n
    ORDINALS[_w.replace("-", " ")] = _n

# --- calendar --------------------------------------------------------------------------------

MONTHS: dict[str, int] = {}
for _m in range(1, 13):
    MONTHS[calendar.month_name[_m].lower()] = _m
    MONTHS[calendar.month_abbr[_m].lower()] = _m
MONTHS["sept"] = 9
MONTH_PATTERN = "|".join(sorted(MONTHS, key=len, reverse=True))
WEEKDAY_PATTERN = "|".join(calendar.day_name[d].lower() for d in range(7))

# --- letters ---------------------------------------------------------------------------------

# NATO spelling alphabet ("A as in alpha" or "alpha bravo seven x-ray"), as Whisper writes it.
NATO = {
    "alpha": "A", "alfa": "A", "bravo": "B", "charlie": "C", "delta": "D", "echo": "E",
    "foxtrot": "F", "golf": "G", "hotel": "H", "india": "I", "juliet": "J", "juliett": "J",
    "kilo": "K", "lima": "L", "mike": "M", "november": "N", "oscar": "O", "papa": "P",
    "quebec": "Q", "romeo": "R", "sierra": "S", "tango": "T", "uniform": "U", "victor": "V",
    "whiskey": "W", "whisky": "W", "xray": "X", "x-ray": "X", "yankee": "Y", "zulu": "Z",
}
# Letter names Whisper sometimes writes as words when a letter is said alone ("B" -> "Be").
# Only ever read inside a run of other letters or digits, never to start one.
LETTER_NAMES = {
    "ay": "A", "bee": "B", "be": "B", "see": "C", "sea": "C", "cee": "C", "dee": "D",
    "gee": "G", "aitch": "H", "eye": "I", "jay": "J", "kay": "K", "el": "L", "ell": "L",
    "em": "M", "en": "N", "pee": "P", "pea": "P", "cue": "Q", "queue": "Q", "are": "R",
    "ess": "S", "es": "S", "tea": "T", "tee": "T", "you": "U", "vee": "V", "ex": "X",
    "why": "Y", "zee": "Z", "zed": "Z",
}

# --- text normalisation ----------------------------------------------------------------------

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": " - ", "\u00a0": " "})


@lru_cache(maxsize=4096)
def prep(text: str) -> str:
    """A transcript with number words as digits, case kept: "the fifth of December at seven
    thirty" -> "the 5th of December at 7 30", "two hundred and fifty dollars" -> "250 dollars".
    Digit words text2num leaves alone become digits next to other digits ("oh two oh" -> "oh 2
    oh"), "zero" always, and "one" before a unit ("one dollar")."""
    text = text.translate(_QUOTES)
    # "$2 million": text2num would read "million" alone as 1000000.
    text = _DIGITS_SCALE.sub(lambda m: _scaled(m[1], m[2]), text)
    try:
        out = alpha2digit(text, "en")
    except Exception:  # text2num is a Rust extension: never let odd input break a call
        out = text
    # Digit words text2num left beside digits or "oh" ("oh two oh", "5 5 5, oh one").
    out = _DIGIT_RUN.sub(lambda m: _DIGIT_WORD.sub(lambda w: str(DIGIT_WORDS[w[0].lower()]),
                                                   m[0]), out)
    out = re.sub(r"\bzero\b", "0", out, flags=re.I)
    return _ONE_OF.sub("1", out)


_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_DIGITS_SCALE = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)\s+(hundred|thousand|million|billion)\b",
                           re.I)


def _scaled(number: str, scale: str) -> str:
    value = float(number) * _SCALES[scale.lower()]
    return str(int(value)) if value.is_integer() else f"{value:.2f}"


_DIGIT_WORD = re.compile(rf"\b(?:{'|'.join(DIGIT_WORDS)})\b", re.I)
_DIGIT_TOKEN = rf"(?:{'|'.join(DIGIT_WORDS)}|oh|\d+)"
_DIGIT_RUN = re.compile(rf"\b{_DIGIT_TOKEN}(?:[ ,-]+{_DIGIT_TOKEN})+\b", re.I)
# "one" before a unit is a number: "one dollar", "one million", "one o'clock", "one person".
_ONE_OF = re.compile(
    r"\bone(?=\s+(?:dollars?|bucks?|cents?|hundred|thousand|million|billion|o'?\s?clock"
    r"|[ap]\.?\s?m\b|person|people|guests?|adults?|child|children|kids?|nights?|rooms?"
    r"|tickets?|items?)\b)", re.I)


def plain(text: str) -> str:
    """Lower case, apostrophes dropped, other punctuation as spaces, single spaces: the form
    questions are matched in ("What's your date-of-birth?" -> "whats your date of birth")."""
    text = text.translate(_QUOTES).lower().replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def name_words(fact_name: str) -> list[str]:
    """A fact's name as words: "date_of_birth" -> ["date", "of", "birth"], "partySize" ->
    ["party", "size"]."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", fact_name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]
