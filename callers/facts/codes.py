"""Phone numbers, email addresses and spelled codes in transcripts: "415-555-0134", "four one
five, double five..."; "j dot smith at example dot com"; "A-B-7-X", "A as in alpha"."""

from __future__ import annotations

import difflib
import re

from callers.facts.candidate import Candidate
from callers.facts.values import EMAIL, canonical_phone
from callers.facts.words import DIGIT_WORDS, LETTER_NAMES, NATO

# --- phone numbers ---------------------------------------------------------------------------

_PHONE_TOKEN = re.compile(r"\+|\d+|[A-Za-z]+|[-().,;/]|\S")


def _scan_phones(t: str) -> list[Candidate]:
    found: list[Candidate] = []
    tokens = list(_PHONE_TOKEN.finditer(t))
    i = 0
    while i < len(tokens):
        digits, start, end, plus, repeat, pieces = "", None, None, False, 1, 0
        j = i
        while j < len(tokens):
            tok = tokens[j][0]
            low = tok.lower()
            if tok.isdigit() or low in ("oh", "o") and (digits or j + 1 < len(tokens)
                                                           and tokens[j + 1][0].isdigit()):
                d = "0" if low in ("oh", "o") else tok
                digits += d[0] * repeat + d[1:]
                repeat, pieces = 1, pieces + 1
                start = tokens[j].start() if start is None else start
                end = tokens[j].end()
            elif low in ("double", "triple") and j + 1 < len(tokens) and (
                    tokens[j + 1][0].isdigit() or tokens[j + 1][0].lower() == "oh"):
                repeat = 2 if low == "double" else 3
                start = tokens[j].start() if start is None else start
            elif low in ("+", "plus") and not digits:
                plus = True
                start = tokens[j].start()
            elif tok in "-().,;/" and (digits or tok == "("):
                start = tokens[j].start() if start is None else start
            else:
                break
            j += 1
        if 7 <= len(digits) <= 15 and end is not None:
            # One run of digits ("1000000") may be a number; groups or a "+" make it a phone.
            cue = plus or pieces >= 2 or len(digits) >= 10
            readings = [canonical_phone(digits, plus)]
            # Whisper writes a leading "four"/"two" as "for"/"to": "I have for 1 5..."
            homophone = _HOMOPHONES.get(tokens[i - 1][0].lower()) if i > 0 else None
            if homophone and len(digits) < 15:
                # Nine digits after "for": the tenth is the homophone ("No, it's for 1 5 5...").
                with_homophone = canonical_phone(homophone + digits, plus)
                if len(digits) == NATIONAL_DIGITS - 1 and not plus:
                    readings.insert(0, with_homophone)
                else:
                    readings.append(with_homophone)
            found.append(Candidate(tuple(readings), start, end, cue))
        i = max(j, i + 1)
    return found


_HOMOPHONES = {"for": "4", "to": "2", "too": "2"}
NATIONAL_DIGITS = 10  # the commonest phone number length (NANP and many others)


# --- email addresses -------------------------------------------------------------------------

_EMAIL_TOKEN = re.compile(r"[a-z0-9]+|[@._+-]|\S", re.I)
_SPOKEN = {"at": "@", "dot": ".", "period": ".", "point": ".", "underscore": "_", "dash": "-",
           "hyphen": "-", "plus": "+"}


def _scan_emails(t: str) -> list[Candidate]:
    toks = [(m[0].lower(), m.start(), m.end()) for m in _EMAIL_TOKEN.finditer(t)]

    def sym(k: int) -> str:
        return _SPOKEN.get(toks[k][0], toks[k][0])

    def word(k: int) -> bool:
        return 0 <= k < len(toks) and toks[k][0].isalnum() and toks[k][0] not in _SPOKEN

    def sentence_end(k: int) -> bool:  # a written "." with a space after it
        return toks[k][0] == "." and k + 1 < len(toks) and toks[k][2] < toks[k + 1][1]

    found = []
    for k in range(1, len(toks)):
        if sym(k) != "@" or not word(k - 1) or not word(k + 1):
            continue
        # Domain: word (. word)+, the dots written or said; letters said apart glued ("c o").
        parts, ends, j = [toks[k + 1][0]], [k + 1], k + 1
        while True:
            if j + 2 < len(toks) and sym(j + 1) in ".-" and word(j + 2) \
                    and not sentence_end(j + 1):
                if sym(j + 1) == "-":
                    parts[-1] += "-" + toks[j + 2][0]
                    ends[-1] = j + 2
                else:
                    parts.append(toks[j + 2][0])
                    ends.append(j + 2)
                j += 2
            elif word(j + 1) and len(toks[j][0]) == 1 and len(toks[j + 1][0]) == 1:
                parts[-1] += toks[j + 1][0]
                ends[-1] = j + 1
                j += 1
            else:
                break
        while len(parts) > 2 and not (parts[-1].isalpha() and len(parts[-1]) >= 2):
            parts.pop()
            ends.pop()
        if len(parts) < 2 or not (parts[-1].isalpha() and len(parts[-1]) >= 2):
            continue
        domain, end = ".".join(parts), toks[ends[-1]][2]
        # Local part: back from "at" through joiners ("j dot smith"), digits said apart
        # ("neil 4 2") and letters said one by one ("j s m i t h").
        j = k - 1
        local = toks[j][0]
        while True:
            if word(j - 2) and sym(j - 1) in "._-+" and not (
                    sentence_end(j - 1) and len(toks[j - 2][0]) > 1):
                local, j = toks[j - 2][0] + sym(j - 1) + local, j - 2
            elif word(j - 1) and (toks[j][0].isdigit() or len(toks[j - 1][0]) == 1
                                  and len(toks[j][0]) == 1):
                local, j = toks[j - 1][0] + local, j - 1
            else:
                break
        readings = [f"{local}@{domain}"]
        # "j smith at ...": a letter said apart before the address may belong to it.
        g = j
        while word(g - 1) and len(toks[g - 1][0]) <= 2 and toks[g - 1][0] not in _NOT_LOCAL:
            local, g = toks[g - 1][0] + local, g - 1
            readings.append(f"{local}@{domain}")
        valid = tuple(r for r in readings if EMAIL.fullmatch(r))
        if valid:
            found.append(Candidate(valid, toks[j][1], end))
    return found


_NOT_LOCAL = {"a", "i", "is", "it", "my", "me", "to", "on", "at", "as", "or", "an", "am", "so",
              "be", "by", "in", "of", "us", "we", "he", "do", "go", "no", "ok"}


# --- spelled codes ---------------------------------------------------------------------------

_CHUNK = re.compile(r"[A-Za-z0-9]+")
_CODE_GAP = re.compile(r"[\s,.'\-/]*")
_CAPS_WORDS = {"OK", "I", "AM", "PM", "USA", "US", "ID", "TV", "FAQ", "ASAP"}


def _scan_spelled(t: str) -> list[Candidate]:
    chunks = list(_CHUNK.finditer(t))
    found = []
    i = 0
    while i < len(chunks):
        units: list[tuple[str, bool]] = []  # (characters, may be the word "a"/"I")
        start = end = None
        repeat = 1
        j = i
        while j < len(chunks):
            c = chunks[j][0]
            low = c.lower()
            active = bool(units)
            if j > i and not _CODE_GAP.fullmatch(t, chunks[j - 1].end(), chunks[j].start()):
                break
            if (here := _as_in(t, chunks, j)) and (active or here[1]):
                k, letter = here
                if letter and units and len(units[-1][0]) == 1 and units[-1][0].isalpha():
                    units[-1] = (letter, False)  # "D as in bravo": the word says B
                elif letter:
                    units.append((letter, False))  # "as in alpha", its letter unheard
                    start = chunks[j].start() if start is None else start
                end, j = chunks[k - 1].end(), k
                continue
            elif any(ch.isdigit() for ch in c) and any(ch.isalpha() for ch in c):
                piece, word = c.upper(), False  # "AB7X", "7X"
            elif c.isdigit():
                piece, word = c, False
            elif len(c) == 1 and t[chunks[j].start() - 1:chunks[j].start()] == "'":
                break  # "It's": a contraction, not the letter S
            elif len(c) == 1:
                piece, word = c.upper(), low in ("a", "i")
            elif c.isupper() and len(c) <= 10 and c not in _CAPS_WORDS:
                piece, word = c, False  # Whisper writes spelled letters as "ABX"
            elif low in NATO:
                piece, word = NATO[low], False
                if low == "x" and j + 1 < len(chunks) and chunks[j + 1][0].lower() == "ray":
                    j += 1
            elif active and low in LETTER_NAMES:
                piece, word = LETTER_NAMES[low], False
            elif active and low in _DIGIT_HOMOPHONES and j + 1 < len(chunks) \
                    and len(chunks[j + 1][0]) <= 2:
                piece, word = _DIGIT_HOMOPHONES[low], False  # "J2W" heard "J, too W"
            elif low in DIGIT_WORDS and (active or j + 1 < len(chunks)):
                piece, word = str(DIGIT_WORDS[low]), False
            elif low == "oh" and (active or j + 1 < len(chunks) and len(chunks[j + 1][0]) == 1):
                piece, word = "O", False
            elif low in ("double", "triple") and j + 1 < len(chunks):
                repeat = 2 if low == "double" else 3
                start = chunks[j].start() if start is None else start
                j += 1
                continue
            elif active and low in ("dash", "hyphen"):
                j += 1
                continue
            elif j + 1 < len(chunks) and (ahead := _as_in(t, chunks, j + 1)) and ahead[1] \
                    and re.fullmatch(r"[\s,.'-]*", t[chunks[j].end():chunks[j + 1].start()]):
                # "he is in echo", "and as in November": a letter Whisper wrote as a word;
                # "Oh, it's an Oscar": the letter just said, described
                if not (units and units[-1][0] == ahead[1]):
                    units.append((ahead[1], False))
                start = chunks[j].start() if start is None else start
                end, j = chunks[ahead[0] - 1].end(), ahead[0]
                continue
            else:
                break
            piece = piece[0] * repeat + piece[1:]
            repeat = 1
            units.append((piece, word))
            start = chunks[j].start() if start is None else start
            end = chunks[j].end()
            j += 1
        # A trailing "a"/"I" before a word starts the next sentence ("...7 X. I think").
        if units and units[-1][1] and j < len(chunks) and len(chunks[j][0]) > 1:
            units.pop()
        chars = "".join(u for u, _ in units)
        # One number alone ("5", "250") is no code; a long one may be ("48213"), if a phrase
        # says so (cue False).
        if len(chars) >= 2 and not (len(units) == 1 and units[0][0].isdigit()
                                    and len(chars) < 4):
            readings = [chars]
            if units[0][1] and len(chars) > 2:
                readings.append(chars[len(units[0][0]):])
            # Digits alone may be a phone number or an amount: only letters mark a code.
            cue = len(units) >= 3 and any(ch.isalpha() for ch in chars)
            found.append(Candidate(tuple(readings), start, end, cue))
        i = max(j, i + 1)
    return found


_DIGIT_HOMOPHONES = {"to": "2", "too": "2", "for": "4", "won": "1"}
_AS_IN = re.compile(r"(?:as|is|has|'?s)\s+in\b|isn't\b|(?P<weak>(?:as|is|'?s)\s+an?|and)\b",
                    re.I)


def _nato(word: str) -> str | None:
    """The letter of a NATO word as Whisper may write it ("Juliette", "Fox" for foxtrot)."""
    w = word.lower()
    if w in NATO:
        return NATO[w]
    if len(w) < 3:
        return None
    for name, letter in NATO.items():
        if name.startswith(w) or difflib.SequenceMatcher(None, w, name).ratio() >= 0.75:
            return letter
    return None


def _as_in(t: str, chunks: list[re.Match], j: int) -> tuple[int, str | None] | None:
    """At "as in bravo" (Whisper: "is in", "'s in", "as a", "isn't", "and bravo"): the chunk
    index after the example word(s), up to the next comma or period, and the NATO letter if
    the example is a NATO word."""
    m = _AS_IN.match(t, chunks[j].start())
    if not m:
        return None
    k = j
    while k < len(chunks) and chunks[k].start() < m.end():
        k += 1
    if k >= len(chunks):
        return None
    letter = _nato(chunks[k][0])
    if letter is None and m["weak"]:
        return None  # "and", "as a" mark an example only before a NATO word
    k += 1
    while k < len(chunks) and not re.search(r"[,.;]", t[chunks[k - 1].end():chunks[k].start()]):
        if len(chunks[k][0]) == 1 or chunks[k][0].isdigit():
            break  # the next unit of the code
        k += 1
    return k, letter
