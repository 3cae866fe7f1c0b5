"""The command line's shared handling (jaxcba.cli._common): argument types against their ranges,
an output folder's targets checked before any work, parameter and fit files read before any volume."""

import argparse
import json

import numpy as np
import pytest

from jaxcba._checks import SEED_RANGE, VOXEL_NM_RANGE
from jaxcba.cli import _common, main
from jaxcba.model.params import CBAParams


@pytest.mark.parametrize("convert, good, bad", [
    (_common.voxel_nm, ["40", repr(VOXEL_NM_RANGE[0]), repr(VOXEL_NM_RANGE[1])],
     ["0", "-1", "nan", "inf", repr(VOXEL_NM_RANGE[1] * 1.0001)]),
    (_common.seed, ["0", str(SEED_RANGE[0]), str(SEED_RANGE[1])], [str(SEED_RANGE[1] + 1), str(SEED_RANGE[0] - 1)]),
    (_common.int_at_least(2), ["2", "7"], ["1", "-3"]),
    (_common.float_in(0.0, 1.0), ["0.5", "1e-9"], ["0", "1", "nan"]),
])
def test_argument_types_keep_their_range_and_say_what_is_allowed(convert, good, bad):
    for text in good:
        value = convert(text)
        assert value == (int(text) if isinstance(value, int) else float(text))
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"{text!r} is out of range; allowed: "):
            convert(text)
    with pytest.raises(argparse.ArgumentTypeError, match="is not a"):
        convert("abc")


def test_output_folder_refuses_a_target_that_is_a_folder_and_notes_overwrites(tmp_path, capsys):
    out = tmp_path / "out"
    assert _common.output_folder("x", out, ("a.json", "b.png")) == out and not out.exists()
    assert capsys.readouterr().err == ""
    out.mkdir()
    (out / "a.json").write_text("{}")
    _common.output_folder("x", out, ("a.json", "b.png"))
    err = capsys.readouterr().err.splitlines()
    assert err == [f"jaxcba x: note: {out / 'a.json'} exists and will be overwritten"]
    (out / "b.png").mkdir()
    with pytest.raises(ValueError, match="b.png is a folder"):
        _common.output_folder("x", out, ("a.json", "b.png"))
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        _common.output_folder("x", tmp_path / "afile", ("a.json",))


def test_parameter_files_are_read_with_one_message(tmp_path):
    p = CBAParams.paper()
    (tmp_path / "p.json").write_text(json.dumps(p.to_dict()))
    assert _common.load_params(str(tmp_path / "p.json")).to_dict() == p.to_dict()
    assert _common.load_fit(tmp_path / "p.json") == p.to_dict()
    (tmp_path / "broken.json").write_text("{ not json")
    for load in (_common.load_params, _common.load_fit):
        with pytest.raises(ValueError, match="cannot read parameter file"):
            load(str(tmp_path / "missing.json"))
        with pytest.raises(ValueError, match="parameter file .* is not valid JSON"):
            load(str(tmp_path / "broken.json"))
    (tmp_path / "short.json").write_text(json.dumps({"lambda_x": 1e-8}))
    with pytest.raises(ValueError, match="missing parameter"):
        _common.load_fit(tmp_path / "short.json")


def test_validate_reads_the_fit_before_the_image(tmp_path, capsys):
    """A bad fit file is reported (exit 2, one line) even when the image would fail too, and
    nothing is written."""
    np.save(tmp_path / "img.npy", np.full((4, 4, 4), 7, np.uint8))  # invalid labels
    (tmp_path / "fit.json").write_text(json.dumps({"lambda_x": 1e-8}))
    code = main(["validate", str(tmp_path / "img.npy"), "--voxel-nm", "40", "--params", str(tmp_path / "fit.json"),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing parameter" in err[0], err
    assert not (tmp_path / "out").exists()


def test_integer_tuples_one_parser_for_shapes_and_factors():
    """The comma-separated integer arguments (preprocess --raw-shape, simulate --shape, validate
    --downsample) go through one type, _common.int_tuple, with the form in every refusal."""
    raw = _common.int_tuple("three positive integers Z,Y,X", lo=1)
    assert raw("2,3,4") == (2, 3, 4) and raw(" 1,1,1 ") == (1, 1, 1)
    for text, what in (("2,2", "give"), ("2,x,2", "is not"), ("0,2,2", "is out of range; allowed:")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{text!r}.*{what}.*three positive integers"):
            raw(text)
    shape = _common.int_tuple("N or NZ,NY,NX", broadcast=True, lo=None, separators="x")
    assert shape("16") == (16, 16, 16) and shape("8x16x32") == (8, 16, 32) and shape("-1") == (-1, -1, -1)
    with pytest.raises(argparse.ArgumentTypeError, match="give N or NZ,NY,NX"):
        shape("8,16")
    factors = _common.int_tuple("factors >= 2", lengths=None, lo=2, none=True)
    assert factors("2,4,8") == (2, 4, 8) and factors("none") == () and factors("") == () and factors("3") == (3,)
    with pytest.raises(argparse.ArgumentTypeError, match="out of range; allowed: factors >= 2"):
        factors("2,1")


def test_int_where_and_the_progress_flag_with_its_alias():
    twins = _common.int_where(lambda b: b == 0 or b >= 2, "0 or >= 2")
    assert twins("0") == 0 and twins("5") == 5
    for bad in ("1", "-2"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{bad!r} is out of range; allowed: 0 or >= 2"):
            twins(bad)
    p = argparse.ArgumentParser()
    _common.add_progress_argument(p)
    assert p.parse_args([]).quiet is False
    assert p.parse_args(["--quiet"]).quiet is True and p.parse_args(["--no-progress"]).quiet is True
    assert "--quiet" in p.format_help() and "--no-progress" not in p.format_help()  # the alias is hidden


def test_every_command_with_progress_output_takes_quiet_and_no_progress():
    from jaxcba.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("simulate", "describe", "tortuosity", "calibrate", "batch", "validate"):
        flags = {s for a in sub[name]._actions for s in a.option_strings}
        assert {"--quiet", "--no-progress"} <= flags, name
        dests = {a.dest for a in sub[name]._actions if {"--quiet", "--no-progress"} & set(a.option_strings)}
        assert dests == {"quiet"}, (name, dests)
