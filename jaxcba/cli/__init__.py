"""The ``jaxcba`` command line: one module per sub-command in this package.

Each sub-command module defines ``add_parser(subparsers)`` (returning the parser, whose
``func`` default is set to its ``run(args) -> int``).

Exit status, the same for every command (docs/guide.md, "Exit status"):

- ``0`` success;
- ``1`` the command completed but its iteration did not converge (``tortuosity``,
  ``calibrate``, ``demo``): the numbers are printed, flagged ``converged: false``;
- ``2`` bad input: a usage error, an invalid value, an unreadable or invalid file, an
  output path that cannot be written, a refused cost estimate (``--force`` overrides),
  or memory exhausted - one line ``jaxcba CMD: error: ...`` on stderr, nothing written;
- ``3`` internal error (a bug): one line naming the exception (``JAXCBA_TRACEBACK=1``
  prints the traceback);
- ``130`` interrupted (Ctrl-C); no partial output is left.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Sub-commands, in the order ``jaxcba --help`` lists them.
COMMANDS = ("demo", "theory", "simulate", "describe", "tortuosity", "calibrate", "preprocess", "batch", "validate")

#: Exit statuses (module docstring).
EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), pointing at ``--help``."""

    def error(self, message):  # noqa: D102 - argparse API
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxcba",
        description="Stochastic 3D model of the nanoporous binder-conductive additive phase (Gräfensteiner et al. 2025) in JAX.",
        epilog="Exit status: 0 success, 1 completed but not converged, 2 bad input, 3 internal error, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"jaxcba.cli.{name}")
        module.add_parser(sub)
    return parser


def _repeated_option(sub: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The first single-valued option given more than once in ``argv`` (argparse lets the last win silently)."""
    for action in sub._actions:
        if type(action) is not argparse._StoreAction or not action.option_strings:
            continue
        n = sum(1 for a in argv if a in action.option_strings or a.split("=", 1)[0] in action.option_strings and "=" in a)
        if n > 1:
            return action.option_strings[-1]
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    if unknown:
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    repeated = _repeated_option(sub, argv)
    if repeated:
        sub.error(f"{repeated} is given more than once")
    import jax

    # Theory and calibration need float64; volumes are created with explicit dtypes.
    jax.config.update("jax_enable_x64", True)
    prefix = f"jaxcba {args.command}"
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `jaxcba theory --json | head`
        sys.stderr.close()
        return EXIT_OK
    except (ValueError, OSError) as exc:  # bad input: values, files, output paths (FileNotFoundError too)
        print(f"{prefix}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"{prefix}: error: out of memory; use a smaller volume or window", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - an internal error: one line, traceback on request
        text = " ".join(str(exc).split())
        if "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
            print(f"{prefix}: error: out of memory ({text[:200]}); use a smaller volume or window", file=sys.stderr)
            return EXIT_BAD_INPUT
        if os.environ.get("JAXCBA_TRACEBACK"):
            import traceback

            traceback.print_exc()
        print(f"{prefix}: internal error: {type(exc).__name__}: {text[:300]} (a bug: please report it; "
              "JAXCBA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
