"""The one progress meter of jaxcba (a tqdm bar on stderr, with an ETA when the total is known).

    from jaxcba._progress import meter

    with meter(total=len(jobs), desc="jaxcba batch", unit="job", enabled=progress) as bar:
        for job in jobs:
            ...
            bar.update(1)

``enabled=False`` gives a no-op meter with the same methods, so callers never test for
``None``. Bars appear only after ``delay`` seconds (default 1 s, so quick runs print
nothing), are removed when done (``leave=False``) and go to stderr, so stdout stays
machine-readable (``--json``). ``total=None`` shows a counter and a rate instead of an ETA.
"""

from __future__ import annotations

import sys

#: Seconds before a bar first appears.
DELAY_S = 1.0


class _Null:
    """The disabled meter: every method accepts the tqdm arguments and does nothing."""

    n = 0
    total = None

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def set_description_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def reset(self, total=None) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


NULL = _Null()


def meter(total: float | None = None, desc: str = "", unit: str = "step", *, enabled: bool = True,
          initial: float = 0, delay: float = DELAY_S, bar_format: str | None = None, leave: bool = False):
    """A tqdm progress bar on stderr (or a no-op when ``enabled`` is false).

    Args:
        total: number of units to do (``None``: unknown - a counter without ETA).
        desc: the label in front of the bar (the command's name and what it does).
        unit: what is counted (``"job"``, ``"step"``, ``"%"``).
        initial: units already done (a resumed run).
        delay: seconds before the bar first appears.
        bar_format: a tqdm ``bar_format`` (default tqdm's, with the ETA).
    """
    if not enabled:
        return NULL
    from tqdm import tqdm

    kwargs = {"bar_format": bar_format} if bar_format is not None else {}
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, leave=leave, delay=delay,
                dynamic_ncols=True, **kwargs)


def interactive() -> bool:
    """Whether stderr is a terminal (the default for showing bars from the command line)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["DELAY_S", "NULL", "interactive", "meter"]
