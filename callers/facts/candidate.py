"""A value found in a transcript, with its span: what every finder returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A value found in prep(text): its readings (canonical, the likeliest first), its span,
    whether the words themselves mark its type ("$", a month name, "p.m.", "@"), and for
    numbers the word after it."""

    values: tuple[str, ...]
    start: int
    end: int
    cue: bool = True
    unit: str = ""
    other: bool = False  # a number that is a quantity of something else ("5 minutes")

    @property
    def value(self) -> str:
        return self.values[0]
