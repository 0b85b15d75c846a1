"""Argument types that reject what cannot work before anything is built or booted."""

from __future__ import annotations

import argparse


def positive_seconds(text: str) -> float:
    """A deadline in seconds: a number above 0 (a negative one would give up before starting)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds above 0")
    return value


def positive_int(text: str) -> int:
    """A count of something that must exist at least once (vCPUs, queues, MiB)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value
