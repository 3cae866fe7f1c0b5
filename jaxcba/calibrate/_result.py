"""One result base for every calibration outcome: frozen dataclasses with one JSON encoding.

Every result type of :mod:`jaxcba.calibrate` is a frozen dataclass deriving from :class:`Result`:
``to_dict()`` gives a JSON-serialisable dict and ``from_dict(d)`` rebuilds the result from it
(``from_dict(json.loads(json.dumps(r.to_dict()))).to_dict() == r.to_dict()``; tested for every
type). How a field is written is said once, where it is declared, by :func:`field`:

* ``key``: its JSON name (default: the field name);
* ``json=False``: not written (``from_dict`` gives its default);
* ``omit``: keys left out of each nested result's dict (e.g. the optimiser histories of the starts);
* ``keyed_by``: a tuple of results written as a mapping ``{getattr(r, keyed_by): r.to_dict()}``;
* ``encode`` / ``decode``: explicit conversions where the type alone does not say it.

``_json_order`` (class attribute) lists the written fields and properties in output order
(default: the fields in declaration order); properties are written, never read back.
Arrays are written as (nested) lists and read back as arrays (float unless the list holds ints), :class:`CBAParams` as its
``to_dict()``, tuples as lists.

The output is strict JSON (#18): every non-finite float, in a field or inside an array, is written
as ``null`` (:func:`jaxcba.io.strict_json`) and read back as NaN where the field is a
float, a tuple of floats or an array. What such a ``null`` means is said beside it: the
optimiser's ``method`` (Nelder–Mead has no ``grad_norm``), stage 2's ``estimator`` (only the
masked one fits ``v3`` and ``theta``), a non-finite loss (``converged`` false), a held-out
descriptor of a phase that does not percolate (its relative errors ``null`` too).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any, Callable

import numpy as np

from jaxcba.io import strict_json
from jaxcba.model.params import CBAParams


def field(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, key: str | None = None,
          json: bool = True, omit: tuple = (), keyed_by: str | None = None,
          encode: Callable | None = None, decode: Callable | None = None):
    """A dataclass field with its JSON encoding (module docstring)."""
    meta = {"key": key, "json": json, "omit": tuple(omit), "keyed_by": keyed_by,
            "encode": encode, "decode": decode}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"result": meta})


_DEFAULT_META = {"key": None, "json": True, "omit": (), "keyed_by": None, "encode": None, "decode": None}


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get("result", _DEFAULT_META)


def encode(value: Any) -> Any:
    """A value as JSON-serialisable Python (results, CBAParams, arrays, tuples, enums, numpy scalars)."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, CBAParams):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        return np.asarray(value).tolist()
    return value


class Result:
    """Base of the calibration results: ``to_dict`` / ``from_dict`` / ``to_json`` (module docstring)."""

    _json_order: tuple = ()

    def to_dict(self) -> dict:
        """Strict-JSON-serialisable dict (fields in ``_json_order``; ``field(json=False)`` left out;
        non-finite floats as ``None``)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        order = self._json_order or tuple(fields)
        out = {}
        for name in order:
            f = fields.get(name)
            meta = _meta(f) if f is not None else _DEFAULT_META
            if not meta["json"]:
                continue
            out[meta["key"] or name] = strict_json(_encode_field(getattr(self, name), meta))
        return out

    @classmethod
    def from_dict(cls, data: dict):
        """Inverse of :meth:`to_dict` (fields not written take their defaults)."""
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            meta = _meta(f)
            key = meta["key"] or f.name
            if not meta["json"] or key not in data:
                continue
            v = data[key]
            if meta["decode"] is not None:
                kwargs[f.name] = meta["decode"](v)
            elif meta["keyed_by"] is not None:
                kwargs[f.name] = tuple(_decode(_item_type(hints[f.name]), e) for e in v.values())
            else:
                kwargs[f.name] = _decode(hints[f.name], v)
        return cls(**kwargs)

    def to_json(self, **kwargs) -> str:
        """``json.dumps(self.to_dict(), allow_nan=False, **kwargs)``: strict JSON."""
        kwargs.setdefault("allow_nan", False)
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


def _encode_field(value, meta) -> Any:
    if meta["encode"] is not None:
        return meta["encode"](value)
    if meta["keyed_by"] is not None:
        return {getattr(r, meta["keyed_by"]): _drop(encode(r), meta["omit"]) for r in value}
    if meta["omit"]:
        if isinstance(value, (tuple, list)):
            return [_drop(encode(v), meta["omit"]) for v in value]
        return _drop(encode(value), meta["omit"])
    return encode(value)


def _drop(d, keys):
    return d if not isinstance(d, dict) else {k: v for k, v in d.items() if k not in keys}


def _item_type(tp):
    args = typing.get_args(tp)
    return args[0] if args else Any


def _decode(tp, v):
    """``v`` read back as type ``tp`` (results, CBAParams, arrays, floats, tuples, dicts of those)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if v is None and len(options) < len(args):
            return None
        return _decode(options[0], v) if len(options) == 1 else v
    if tp is float:
        return float("nan") if v is None else float(v)
    if v is None:
        return None
    if isinstance(tp, type) and issubclass(tp, Result):
        return tp.from_dict(v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp[v.upper()]
    if tp is CBAParams:
        return CBAParams.from_dict(v)
    if tp is np.ndarray:
        a = np.asarray(v, dtype=None if v else float)
        return np.asarray(v, dtype=float) if a.dtype == object else a  # null -> nan
    if origin is tuple or tp is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], e) for e in v)
        if args:
            return tuple(_decode(a, e) for a, e in zip(args, v))
        return tuple(tuple(e) if isinstance(e, list) else e for e in v)
    if origin is dict and len(args) == 2:
        return {k: _decode(args[1], e) for k, e in v.items()}
    return v
