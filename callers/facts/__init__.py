"""Typed facts: one vocabulary of fact types, shared by the caller's brain and the grader.

    parse(type, value, options)          scenario value -> canonical string (ValueError says why)
    speak(type, value, rng=, verbosity=) how a person says it ("December fifth")
    find(type, text, expected)           the value in an agent's transcript, canonical, or None
    same(type, expected, heard, fuzzy=)  compare (names by spelling and sound when fuzzy)
    ask_patterns(name, type, extra)      regexes that ask for the fact; asked_fact() picks one
    read_backs(text, facts)              which facts the agent read back, with what value

Modules: values (types, parsing, comparing canonical values), words (vocabularies and the
transcript normalisation), speak, find (the finders' API, numbers, names, yes/no, choices, text)
with when (dates, times) and codes (phones, emails, spelled codes), candidate (a found value),
ask (ask phrases), match (same, read-backs).
"""

from callers.facts.ask import ask_patterns, ask_phrases, asked_fact
from callers.facts.find import Candidate, find, scan
from callers.facts.match import read_backs, same, wrong_read_backs
from callers.facts.speak import money_words, number_words, phone_words, speak, spell
from callers.facts.values import TYPES, Fact, check_type, choice_table, equal, parse, similar_names

__all__ = [
    "TYPES", "Candidate", "Fact", "ask_patterns", "ask_phrases", "asked_fact", "check_type",
    "choice_table", "equal", "find", "money_words", "number_words", "parse", "phone_words",
    "read_backs", "same", "scan", "similar_names", "speak", "spell", "wrong_read_backs",
]
