"""Spoken-language helpers shared by the caller, the reference agent and the evaluation."""

from __future__ import annotations

import difflib
import re
import unicodedata

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = {*_UNITS, *_TEENS, *_TENS, "hundred", *_SCALES}
_MONEY_WORDS = {"dollar", "dollars", "buck", "bucks", "usd"}

# Digits with optional thousands separators; "$", words and digits are separate tokens.
_TOKEN = re.compile(r"\$|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?")


def _tokens(text: str) -> list[str]:
    # Hyphens join "forty-two"; splitting on them turns it into two number words.
    return _TOKEN.findall(text.lower().replace("’", "'").replace("-", " "))


def _is_digits(tok: str) -> bool:
    return tok[0].isdigit()


def _starts_number(toks: list[str], i: int) -> bool:
    tok = toks[i]
    if _is_digits(tok) or tok in _NUMBER_WORDS:
        return True
    # "a hundred", "a thousand": the article stands for one only before a scale word.
    return tok == "a" and i + 1 < len(toks) and toks[i + 1] in {"hundred", *_SCALES}


def _parse_words(toks: list[str], i: int) -> tuple[float, int]:
    """Parse one run of number words starting at i; return (value, index after the run)."""
    total, current, prev = 0, 0, None
    start = i
    while i < len(toks):
        tok = toks[i]
        if tok == "a" and i == start:
            current, prev = 1, "unit"
        elif tok in _UNITS or tok in _TEENS:
            value = _UNITS.get(tok, _TEENS.get(tok))
            if prev in ("unit", "teen"):
                break  # "one two" is two numbers, not twelve
            if prev == "tens" and (tok in _TEENS or current % 10):
                break
            current += value
            prev = "unit" if tok in _UNITS else "teen"
        elif tok in _TENS:
            if prev in ("unit", "teen"):
                if current >= 20:
                    break
                # Colloquial "three fifty" / "nineteen ninety": the first part is hundreds.
                current = current * 100 + _TENS[tok]
            elif prev == "tens":
                break
            else:
                current += _TENS[tok]
            prev = "tens"
        elif tok == "hundred":
            if prev == "hundred":
                break
            current, prev = (current or 1) * 100, "hundred"
        elif tok in _SCALES:
            total += (current or 1) * _SCALES[tok]
            current, prev = 0, "scale"
        elif tok == "and" and prev in ("hundred", "scale") and i + 1 < len(toks) and (
            toks[i + 1] in _UNITS or toks[i + 1] in _TEENS or toks[i + 1] in _TENS
        ):
            pass  # "two hundred and fifty"
        elif tok == "point" and prev is not None and i + 1 < len(toks) and toks[i + 1] in _UNITS:
            digits = ""
            i += 1
            while i < len(toks) and toks[i] in _UNITS:
                digits += str(_UNITS[toks[i]])
                i += 1
            return total + current + float("0." + digits), i
        else:
            break
        i += 1
    return float(total + current), i


def _numbers(text: str) -> list[tuple[float, bool]]:
    """Every number in text, in order, each with whether money words mark it as an amount."""
    toks = _tokens(text)
    found: list[tuple[float, bool]] = []
    i = 0
    while i < len(toks):
        if not _starts_number(toks, i):
            i += 1
            continue
        money = i > 0 and toks[i - 1] == "$"
        if _is_digits(toks[i]):
            value, i = float(toks[i].replace(",", "")), i + 1
            # "2 thousand", "1.5 million": Whisper mixes digits and scale words.
            while i < len(toks) and (toks[i] == "hundred" or toks[i] in _SCALES):
                value *= 100 if toks[i] == "hundred" else _SCALES[toks[i]]
                i += 1
        else:
            value, i = _parse_words(toks, i)
        if i < len(toks) and toks[i] in _MONEY_WORDS:
            money = True
            i += 1
            # "... dollars and fifty cents"
            if i + 1 < len(toks) and toks[i] == "and" and _starts_number(toks, i + 1):
                cents, j = _parse_cents(toks, i + 1)
                if cents is not None:
                    value, i = value + cents / 100, j
        found.append((value, money))
    return found


def _parse_cents(toks: list[str], i: int) -> tuple[float | None, int]:
    if _is_digits(toks[i]):
        value, j = float(toks[i].replace(",", "")), i + 1
    else:
        value, j = _parse_words(toks, i)
    if j < len(toks) and toks[j] in ("cent", "cents"):
        return value, j + 1
    return None, i


def words_to_number(text: str) -> float | None:
    """The first number in text, spoken ("two hundred fifty") or written ("$1,250.50")."""
    found = _numbers(text)
    return found[0][0] if found else None


def find_amount(text: str) -> float | None:
    """The money amount in a sentence: a number marked by $/dollars/bucks, else the largest."""
    found = _numbers(text)
    if not found:
        return None
    marked = [value for value, money in found if money]
    return marked[0] if marked else max(value for value, _ in found)


_SMALL = [*_UNITS, *_TEENS]
_TENS_BY_VALUE = {v: k for k, v in _TENS.items()}


def _int_to_words(n: int) -> str:
    if n < 20:
        return _SMALL[n]
    if n < 100:
        tens, rest = divmod(n, 10)
        return _TENS_BY_VALUE[tens * 10] + (f" {_SMALL[rest]}" if rest else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_SMALL[hundreds]} hundred" + (f" {_int_to_words(rest)}" if rest else "")
    for name, scale in sorted(_SCALES.items(), key=lambda kv: -kv[1]):
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{_int_to_words(head)} {name}" + (f" {_int_to_words(rest)}" if rest else "")
    raise AssertionError(n)  # unreachable: every n >= 1000 has a scale


def number_to_words(n: float) -> str:
    """Spell a number as the agent says it: 250 -> "two hundred fifty", 19.5 -> "... point five"."""
    sign = "minus " if n < 0 else ""
    whole, _, frac = f"{abs(n):.6f}".rstrip("0").rstrip(".").partition(".")
    words = _int_to_words(int(whole))
    if frac:
        words += " point " + " ".join(_SMALL[int(d)] for d in frac)
    return sign + words


def canonical_amount(x: float) -> str:
    """The comparable string form of an amount: "250" for 250.0, "19.50" for 19.5."""
    cents = round(x * 100)
    return str(cents // 100) if cents % 100 == 0 else f"{cents / 100:.2f}"


def normalize_name(text: str) -> str:
    """Lowercase ASCII letters only, so "S-M-I-T-H", "Smith." and "Smíth" all become "smith"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if c.isascii() and c.isalpha())


# Words that are never the name: fillers, the question's own words, negations, the agent's
# read-back phrases (so evaluation can parse "I have your last name as Smith" too), money.
_NOT_NAMES = {
    "a", "about", "actually", "again", "ah", "ahead", "alright", "am", "amount", "an", "and",
    "around", "as", "be", "before", "but", "call", "called", "calling", "correct", "dollar",
    "dollars", "bucks", "cents", "er", "erm", "family", "feedback", "first", "for", "given",
    "go", "goodbye", "got", "have", "hello", "hey", "hi", "hmm", "how", "i", "i'm", "is", "isn't",
    "it", "it's", "its", "just", "last", "like", "ma'am", "me", "mm", "money", "my", "name",
    "name's", "no", "nope", "not", "of", "oh", "ok", "okay", "please", "right", "said", "sir",
    "so", "sorry", "spell", "spelled", "spelt", "sure", "surname", "thank", "thanks", "that",
    "that's", "the", "this", "to", "today", "uh", "um", "was", "well", "what", "what's", "wrong",
    "yeah", "yep", "yes", "you", "your", "incorrect", "with", "point",
    # Answer lead-ins: "That would be Smith", "Sure thing, my last name would be Smith".
    "would", "could", "should", "will", "thing", "certainly", "course", "goes",
} | _NUMBER_WORDS

# Hesitation sounds as Whisper spells them, stretched or not ("Umm", "Hmmm", "Uhh", "Erm") and
# two-part ones ("Mm-hmm", "Uh-huh"): never a name, and skipped before a negation. Whole words
# only, and not "Em" (a name): "Uma" or "Emma" stay names.
_FILLER_SOUND = r"(?:u+h*m+|u+h+|e+r+m*|e+h+m+|e+m{2,}|a+h+m*|h*m{2,}|h+m+|h+u+h+)"
FILLER_PATTERN = rf"{_FILLER_SOUND}(?:-{_FILLER_SOUND})*"  # one filler word, for other regexes
_FILLER = re.compile(FILLER_PATTERN)


def is_filler(word: str) -> bool:
    """Whether one word is a hesitation sound: "um", "Umm", "hmm", "Uh-huh", "Mm-hmm"."""
    return _FILLER.fullmatch(word.lower()) is not None


_HYPHEN_SPELLED = re.compile(r"(?<![\w'’-])[A-Za-z](?:-[A-Za-z])+(?![\w'’-])")
# Space/dot separated letters must be capitals (Whisper writes them so), or "I a" would match.
_SPACED_SPELLED = re.compile(r"(?<![\w'’])[A-Z]\.?(?:[ ,]+[A-Z]\.?){2,}(?![\w'’])")
_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def _capitalize(word: str) -> str:
    # Keep deliberate mixed case ("McDonald"); fix all-lower or all-caps ("o'brien" -> "O'Brien").
    if not (word.islower() or word.isupper()):
        return word
    return re.sub(r"[^\W\d_]+", lambda m: m.group().capitalize(), word)


def extract_name(text: str) -> str | None:
    """The name in an answer to "what is your name?": spelled letters, else the first real word."""
    spelled = _HYPHEN_SPELLED.search(text) or _SPACED_SPELLED.search(text)
    if spelled:
        return normalize_name(spelled.group()).capitalize()
    for word in _NAME_TOKEN.findall(text):
        lowered = word.lower().replace("’", "'")
        if len(word) > 1 and lowered not in _NOT_NAMES and not is_filler(lowered):
            return _capitalize(word)
    return None


def names_match(a: str, b: str, threshold: float = 0.8) -> bool:
    """Whether two spoken names are the same name, after normalising, by difflib similarity."""
    na, nb = normalize_name(a), normalize_name(b)
    if not na or not nb:
        return False
    return difflib.SequenceMatcher(None, na, nb).ratio() >= threshold


_FILLER_START = re.compile(rf"^(?:(?:{FILLER_PATTERN}|oh|well|so)\b[\s,.]*)+")
_NEGATION = re.compile(
    r"^(?:no\b(?![\s,]*(?:problem|worries)\b)|nope\b|nah\b|wrong\b|incorrect\b|actually\b"
    r"|not\s+(?:right|correct|quite|exactly)\b"
    r"|(?:that|it)(?:'s|\s+is|\s+was)\s+(?:not|wrong|incorrect)\b"
    r"|(?:that|it)\s+(?:isn't|wasn't)\b)"
)


def is_negation(text: str) -> bool:
    """Whether the utterance starts by rejecting what was said: "No,", "That's not right"."""
    t = _FILLER_START.sub("", text.strip().lower().replace("’", "'"))
    return bool(_NEGATION.match(t))
