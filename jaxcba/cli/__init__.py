"""The ``jaxcba`` command line: one module per sub-command in this package.

Each sub-command module defines ``add_parser(subparsers)`` (returning the parser, whose
``func`` default is set to its ``run(args) -> int``). Errors a user can fix
(``ValueError``, ``FileNotFoundError``) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-commands, in the order ``jaxcba --help`` lists them.
COMMANDS = ("demo", "theory", "simulate", "describe", "tortuosity", "calibrate", "preprocess", "batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxcba",
        description="Stochastic 3D model of the nanoporous binder-conductive additive phase (Gräfensteiner et al. 2025) in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"jaxcba.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import jax

    # Theory and calibration need float64; volumes are created with explicit dtypes.
    jax.config.update("jax_enable_x64", True)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"jaxcba {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `jaxcba theory --json | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"jaxcba {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
