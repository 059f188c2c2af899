"""Argument types shared by the outbox's management commands: argparse turns a ValueError into a usage error."""

import argparse
import math

MAX_DAYS = 36_600  # a century; far beyond it, date arithmetic overflows half-way through a purge


def _number(value: str, kind: type[int] | type[float], *, minimum: float, inclusive: bool) -> float:
    number = kind(value)
    # `age > nan` is never true: a monitor or a poll interval of nan/inf would silently do nothing.
    if not math.isfinite(number) or number < minimum or (not inclusive and number == minimum):
        raise ValueError(value)
    return number


def positive_int(value: str) -> int:
    return int(_number(value, int, minimum=0, inclusive=False))


def non_negative_int(value: str) -> int:
    return int(_number(value, int, minimum=0, inclusive=True))


def positive_float(value: str) -> float:
    return _number(value, float, minimum=0, inclusive=False)


def non_negative_float(value: str) -> float:
    return _number(value, float, minimum=0, inclusive=True)


def days(value: str) -> int:
    number = non_negative_int(value)
    if number > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"at most {MAX_DAYS} days: {value!r}")
    return number
