"""What a value may be, declared as data: the one vocabulary of extractor options and head parameters.

As in scikit-learn's ``utils/_param_validation.py``, each parameter lists the rules its values may follow, and a
value that no rule allows is refused in one line that says what would do (``refusal``: "must be an integer >= 1
or none"). Extractor configurations (``extractors.base.option``) and heads (``Head._parameter_constraints``)
declare their values with these rules, so both speak the same words. It sits at the bottom layer, beside the
errors, because every layer checks values.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np


class Rule:
    """One kind of value: ``allows`` tests a value, ``text`` names the kind in a message ("an integer >= 1")."""

    text: str

    def allows(self, value: Any) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Is(Rule):
    """A kind of value tested by a predicate (None, a bool, a non-empty list of names, ...)."""

    text: str
    test: Callable[[Any], bool]

    def allows(self, value: Any) -> bool:
        return bool(self.test(value))


def _integer(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


INTEGER = Is("an integer", _integer)
NUMBER = Is("a number", _number)  # finite: nan and inf are refused
BOOL = Is("true or false", lambda value: isinstance(value, bool | np.bool_))
STR = Is("text", lambda value: isinstance(value, str))
TEXT = Is("non-empty text", lambda value: isinstance(value, str) and bool(value))
PATH = Is("a path", lambda value: isinstance(value, str | Path) and bool(str(value)))
NONE = Is("none", lambda value: value is None)
KINDS: dict[type, Rule] = {int: INTEGER, float: NUMBER, bool: BOOL, str: STR}  # the values of each type a field may have


@dataclass(frozen=True)
class Interval(Rule):
    """A number from ``low`` to ``high`` (None: unbounded; ``*_open``: the bound itself excluded). ``of``: int or
    float, named in the text ("an integer >= 1"); None: any number, the text naming the bounds alone (">= 1"), for
    a value whose type is checked apart (an extractor option's, from its field's type)."""

    of: type | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def text(self) -> str:
        lows, highs = (">" if self.low_open else ">="), ("<" if self.high_open else "<=")
        if self.low is not None and self.high is not None:
            bounds = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            bounds = f"{lows} {self.low:g}"
        else:
            bounds = "" if self.high is None else f"{highs} {self.high:g}"
        return " ".join(part for part in (self.of and KINDS[self.of].text, bounds) if part)

    def allows(self, value: Any) -> bool:
        if not (KINDS[self.of] if self.of else NUMBER).allows(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or (value < self.high if self.high_open else value <= self.high))


@dataclass(frozen=True)
class OneOf(Rule):
    """One of ``values``."""

    values: tuple

    @property
    def text(self) -> str:
        return f"one of {', '.join(map(repr, self.values))}"

    def allows(self, value: Any) -> bool:
        return isinstance(value, Hashable) and value in self.values


@dataclass(frozen=True)
class MultipleOf(Rule):
    """An integer multiple of ``step``."""

    step: int

    @property
    def text(self) -> str:
        return f"a multiple of {self.step}"

    def allows(self, value: Any) -> bool:
        return _number(value) and value % self.step == 0


def allowed(rules: Sequence[Rule]) -> str:
    """What ``rules`` allow, in words: "an integer >= 1 or none"."""
    return " or ".join(rule.text for rule in rules)


def refusal(value: Any, rules: Sequence[Rule]) -> str | None:
    """None when some rule of ``rules`` allows ``value``; else why not, as "must be <what they allow>"."""
    return None if any(rule.allows(value) for rule in rules) else f"must be {allowed(rules)}"
