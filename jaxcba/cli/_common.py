"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import sys

from jaxcba.model.params import CBAParams


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        default="paper",
        metavar="paper|FILE.json",
        help="model parameters: 'paper' (Table 2, default) or a JSON file with the eight keys",
    )


def load_params(spec: str) -> CBAParams:
    """``'paper'`` -> Table 2, otherwise a JSON file (validated; ``ValueError`` on problems)."""
    if spec == "paper":
        return CBAParams.paper()
    return CBAParams.from_json(spec)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
