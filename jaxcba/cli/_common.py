"""Helpers shared by the sub-commands: argument types (checked by :mod:`jaxcba._checks`, the
one rule of every command) and output paths (checked before any work; an existing output
is overwritten, and the command says so on stderr)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxcba import _checks
from jaxcba.io import read_json, strict_json
from jaxcba.model.params import CBAParams
from jaxcba.plotting import save_png as save_png  # the commands' PNG writer (atomic, umask mode)


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        default="paper",
        metavar="paper|FILE.json",
        help="model parameters: 'paper' (Table 2, default) or a JSON file with the eight keys",
    )


def add_force_argument(parser: argparse.ArgumentParser, what: str = "memory or work") -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"run even when the up-front estimate of the {what} exceeds the limit")


def load_params(spec: str) -> CBAParams:
    """``'paper'`` -> Table 2, otherwise a JSON file (validated; ``ValueError`` on problems)."""
    if spec == "paper":
        return CBAParams.paper()
    return CBAParams.from_dict(read_params_file(spec))


def read_params_file(path) -> object:
    """The parsed JSON of a parameter file (``ValueError``: ``cannot read parameter file ...``
    or ``parameter file ... is not valid JSON``), read before any volume."""
    return read_json(path, "parameter file")


def load_fit(path) -> dict:
    """A fitted-parameter file (``jaxcba calibrate --out``: the eight values, optionally an
    uncertainty block and the fit's voxel_nm), read and checked before any volume
    (:func:`jaxcba.validate.load_fit`); returns its JSON object, for :func:`jaxcba.validate.validate`."""
    from jaxcba.validate import load_fit as check_fit  # on use: it imports the descriptors and transport layers

    data = read_params_file(path)
    check_fit(data)
    return data


def _argtype(check):
    """An argparse ``type`` from a check of :mod:`jaxcba._checks` (its message becomes the usage error)."""

    def convert(text: str):
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _ranged(parse, ok, allowed: str, name: str):
    """An argparse ``type``: ``parse(text)``, refused as out of range (saying what is ``allowed``) unless ``ok(value)``."""

    def convert(text: str):
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; allowed: {allowed}")
        return value

    convert.__name__ = name
    return convert


#: ``--voxel-nm``: a finite number in :data:`jaxcba._checks.VOXEL_NM_RANGE` [nm].
voxel_nm = _ranged(_float, lambda v: _checks.VOXEL_NM_RANGE[0] <= v <= _checks.VOXEL_NM_RANGE[1],
                   "a voxel side in [{:g}, {:g}] nm".format(*_checks.VOXEL_NM_RANGE), "voxel_nm")
#: ``--seed``: an integer in :data:`jaxcba._checks.SEED_RANGE`.
seed = _ranged(_int, lambda v: _checks.SEED_RANGE[0] <= v <= _checks.SEED_RANGE[1],
               "an integer in [-2^63, 2^63 - 1]", "seed")


def axis(text: str) -> int:
    """``--axis``: ``0|1|2`` or ``z|y|x`` (:func:`jaxcba._checks.parse_axis`), as an int."""
    return _argtype(lambda t: _checks.parse_axis(t, "axis"))(text)


def int_at_least(lo: int):
    """An argparse ``type``: an integer ``>= lo``."""
    return _ranged(_int, lambda v: v >= lo, f"an integer >= {lo}", f"int>={lo}")


def int_where(ok, allowed: str, name: str = "int"):
    """An argparse ``type``: an integer for which ``ok(value)`` holds, else refused saying what is ``allowed``."""
    return _ranged(_int, ok, allowed, name)


def int_tuple(form: str, *, lengths=(3,), lo: int | None = 1, broadcast: bool = False, none: bool = False,
              separators: str = ","):
    """An argparse ``type``: comma-separated integers ``>= lo`` (``None``: any) as a tuple, e.g. ``Z,Y,X``.

    ``lengths``: the counts allowed (``None``: any); ``broadcast``: one number stands for three
    (``N`` -> ``(N, N, N)``); ``none``: ``''`` or ``none`` is the empty tuple; ``separators``: more
    characters read as commas (``"x"``: ``64x64x32``). ``form`` says what is allowed in the message
    (``'8,x' is not three integers >= 1 Z,Y,X``)."""

    def convert(text: str) -> tuple[int, ...]:
        t = text.strip()
        if none and t.lower() in ("", "none"):
            return ()
        for c in separators:
            t = t.replace(c, ",")
        try:
            vals = tuple(int(v) for v in t.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {form}") from None
        if broadcast and len(vals) == 1:
            vals = vals * 3
        if lengths is not None and len(vals) not in lengths:
            raise argparse.ArgumentTypeError(f"{text!r}: give {form}")
        if lo is not None and min(vals) < lo:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; allowed: {form}")
        return vals

    convert.__name__ = "integers"
    return convert


def add_progress_argument(parser: argparse.ArgumentParser, what: str = "progress bars") -> None:
    """``--quiet`` (no progress output on stderr; ``args.quiet``), with ``--no-progress`` as a
    hidden alias of the same flag so that older scripts keep working."""
    parser.add_argument("--quiet", action="store_true", help=f"no {what} on stderr")
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def float_in(lo: float, hi: float):
    """An argparse ``type``: a number in the open interval ``(lo, hi)``."""
    return _ranged(_float, lambda v: lo < v < hi, f"a number in ({lo:g}, {hi:g})", f"float in ({lo:g}, {hi:g})")


def output(command: str, path, name: str = "--out", *, suffixes=None, folder: bool = False,
           what: str = "file") -> Path:
    """Check an output path before any work (:func:`jaxcba._checks.check_output_path`) and say
    on stderr that an existing file will be overwritten."""
    p = _checks.check_output_path(path, name, suffixes=suffixes, folder=folder, what=what)
    if not folder and p.exists():
        print(f"jaxcba {command}: note: {p} exists and will be overwritten", file=sys.stderr)
    return p


def output_folder(command: str, path, names, name: str = "--out") -> Path:
    """Check an output folder and the files ``names`` a command writes into it, before any work:
    the folder must not be a file (:func:`output`), no target may be a folder, and the targets
    that exist are said on stderr to be overwritten. Returns the folder."""
    out = output(command, path, name, folder=True, what="folder")
    targets = [out / n for n in names]
    for t in targets:
        if t.is_dir():
            raise ValueError(f"{name} {out}: {t} is a folder")
    note_overwrites(command, targets)
    return out


def note_overwrites(command: str, paths) -> None:
    """Say on stderr which of ``paths`` exist and will be overwritten."""
    for p in _checks.existing(paths):
        print(f"jaxcba {command}: note: {p} exists and will be overwritten", file=sys.stderr)


#: ``value`` with every non-finite float replaced by ``None`` (strict JSON).
finite_or_none = strict_json
def print_json(obj) -> None:
    """``obj`` as strict JSON (non-finite floats as ``null``) on stdout."""
    json.dump(strict_json(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
