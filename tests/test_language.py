"""Spoken numbers, amounts, names and negations as Whisper transcribes them."""

from __future__ import annotations

import pytest

from callers.language import (
    canonical_amount,
    extract_name,
    find_amount,
    is_negation,
    names_match,
    normalize_name,
    number_to_words,
    words_to_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two hundred fifty", 250),
        ("two hundred and fifty dollars", 250),
        ("one thousand two hundred", 1200),
        ("twelve hundred", 1200),
        ("250", 250),
        ("$1,250.50", 1250.5),
        ("forty-two", 42),
        ("a hundred", 100),
        ("a hundred and five", 105),
        ("three fifty", 350),
        ("nineteen ninety-nine", 1999),
        ("nineteen point five", 19.5),
        ("2 thousand", 2000),
        ("zero", 0),
        ("one million two hundred thousand", 1_200_000),
    ],
)
def test_words_to_number_reads_words_and_digits(text, expected):
    assert words_to_number(text) == expected


@pytest.mark.parametrize("text", ["", "hello there", "a refund", "point", "and"])
def test_words_to_number_is_none_without_a_number(text):
    assert words_to_number(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It's about $250.", 250),
        ("Two hundred fifty dollars, please.", 250),
        ("The amount is 1,200 dollars.", 1200),
        ("uh, 75 bucks", 75),
        ("It's $19.50.", 19.5),
        ("one hundred dollars and fifty cents", 100.5),
        ("About three fifty.", 350),
        ("Got it, two hundred fifty dollars. Before you go, how was this call for you today?", 250),
    ],
)
def test_find_amount_reads_words_and_digits_in_sentences(text, expected):
    assert find_amount(text) == expected


def test_find_amount_prefers_the_number_marked_as_money():
    assert find_amount("I have one question about a 300 dollar charge from 2 weeks ago") == 300


def test_find_amount_without_money_words_takes_the_largest_number():
    assert find_amount("It was 2 charges, 450 in total") == 450


@pytest.mark.parametrize(
    "text", ["How can I help you today?", "Thanks, John. And your last name?", "a refund", ""]
)
def test_find_amount_is_none_without_a_number(text):
    assert find_amount(text) is None


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (42, "forty two"),
        (250, "two hundred fifty"),
        (1200, "one thousand two hundred"),
        (1999, "one thousand nine hundred ninety nine"),
        (1_000_000, "one million"),
        (19.5, "nineteen point five"),
        (250.0, "two hundred fifty"),
    ],
)
def test_number_to_words_spells_amounts(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n", [0, 5, 13, 42, 99, 100, 250, 1200, 1999, 12_345, 19.5, 1_000_001])
def test_number_to_words_round_trips_through_words_to_number(n):
    assert words_to_number(number_to_words(n)) == n


@pytest.mark.parametrize(
    ("x", "canonical"),
    [(250.0, "250"), (250, "250"), (19.5, "19.50"), (1250.5, "1250.50"), (0.1 + 0.2, "0.30"),
     (99.999, "100")],
)
def test_canonical_amount_drops_zero_cents_and_keeps_two_decimals_otherwise(x, canonical):
    assert canonical_amount(x) == canonical


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("S-M-I-T-H", "smith"), ("S M I T H", "smith"), ("Smith.", "smith"), ("O'Brien", "obrien"),
     ("Nguyễn", "nguyen"), ("", "")],
)
def test_normalize_name_keeps_lowercase_letters_only(text, normalized):
    assert normalize_name(text) == normalized


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("My first name is John.", "John"),
        ("It's Garcia, G-A-R-C-I-A.", "Garcia"),
        ("Johnson.", "Johnson"),
        ("Yeah, my last name is Nguyen", "Nguyen"),
        ("Sure. David.", "David"),
        ("S-M-I-T-H", "Smith"),
        ("S. M. I. T. H.", "Smith"),
        ("Uh, hi, this is Sarah", "Sarah"),
        ("smith", "Smith"),
        ("o'brien", "O'Brien"),
        ("McDonald", "McDonald"),
        ("No, it's Smith.", "Smith"),
        ("I have your last name as Smash. What amount of money is this about?", "Smash"),
    ],
)
def test_extract_name_finds_the_name_in_an_answer(text, name):
    assert extract_name(text) == name


def test_extract_name_trusts_the_spelling_over_the_word():
    # The letters are what the caller means when Whisper mishears the word itself.
    assert extract_name("Smash, S-M-I-T-H.") == "Smith"


@pytest.mark.parametrize("text", ["", "Uh, um.", "Yes, sure.", "It's 250 dollars.", "My name is"])
def test_extract_name_is_none_without_a_name(text):
    assert extract_name(text) is None


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ("Smith", "smith", True),
        ("S-M-I-T-H", "Smith.", True),
        ("Nguyen", "Nguyễn", True),
        ("Smith", "Smash", False),
        ("Garcia", "Johnson", False),
        ("", "", False),
    ],
)
def test_names_match_is_normalized_and_fuzzy(a, b, match):
    assert names_match(a, b) is match


def test_names_match_threshold_is_adjustable():
    assert names_match("Smith", "Smyth")
    assert not names_match("Smith", "Smyth", threshold=0.9)


@pytest.mark.parametrize(
    "text",
    ["No, it's Smith.", "No that's wrong", "That's not right.", "Actually it's three hundred.",
     "Nope.", "Uh, no, Smith.", "It's not Smash, it's Smith.", "That is incorrect.",
     "Not quite, it's 300."],
)
def test_is_negation_detects_a_rejection_at_the_start(text):
    assert is_negation(text)


@pytest.mark.parametrize(
    "text",
    ["Smith.", "Yes, that's right.", "No problem.", "Not bad, thanks.", "Nobody called me.",
     "I know it's not easy.", "It's Smith, no doubt.", ""],
)
def test_is_negation_ignores_answers_that_do_not_start_by_rejecting(text):
    assert not is_negation(text)


@pytest.mark.parametrize("text, name", [
    ("That would be Smith.", "Smith"),
    ("Sure thing, my last name would be Wilson.", "Wilson"),
    ("Sorry, my last name would be Wilson.", "Wilson"),
    ("Of course, it's Garcia.", "Garcia"),
])
def test_answer_lead_ins_are_not_names(text, name):
    assert extract_name(text) == name
