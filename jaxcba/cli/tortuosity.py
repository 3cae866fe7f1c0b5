"""`jaxcba tortuosity` (placeholder until its issue lands)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("tortuosity", help="(not available yet)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    raise ValueError("'jaxcba tortuosity' is not implemented yet")
