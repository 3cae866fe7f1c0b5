"""What `validate` says of twins and of mismatches (docs/validate.md, "What a twin gives").

The set-up of tests/test_validate.py: Table 2 with shorter graphite grains (alpha2 = 1000 nm),
64^3 windows at 20 nm, n = 5 realizations, factors 1, 2, 4 (39 descriptors). Images: twins
simulated with seeds 1000 + s (realizations from key s), twins with doubled eta (seeds 2000 + s)
and porespy blobs (porosity 0.7, blobiness 1, seed s; blobs are pore). Prints one line per image
and a summary per kind: consistent and inside-[min, max] counts, the descriptors outside.

Usage:  python experiments/validate_twins.py [--twins 10] [--doubled 5] [--blobs 3] [--n 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def images(twins: int, doubled: int, blobs: int):
    """``(kind, seed, key, labels)`` of every image of the study."""
    from jaxcba import CBAParams, simulate

    params = CBAParams.paper().replace(alpha2=1000.0)
    for s in range(twins):
        yield "twin", 1000 + s, s, np.asarray(simulate(params, 64, 20.0, 1000 + s))
    for s in range(doubled):
        yield "doubled eta", 2000 + s, 0, np.asarray(simulate(params.replace(eta=2 * params.eta), 64, 20.0, 2000 + s))
    if blobs:
        import porespy

        for s in range(blobs):
            yield "blobs", s, 0, (~porespy.generators.blobs([64] * 3, porosity=0.7, blobiness=1, seed=s)).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twins", type=int, default=10)
    ap.add_argument("--doubled", type=int, default=5)
    ap.add_argument("--blobs", type=int, default=3)
    ap.add_argument("--n", type=int, default=5, help="realizations per validation")
    a = ap.parse_args(argv)
    from jaxcba import CBAParams
    from jaxcba.validate import validate

    params = CBAParams.paper().replace(alpha2=1000.0)
    by_kind: dict[str, list] = {}
    for kind, seed, key, img in images(a.twins, a.doubled, a.blobs):
        t0 = time.perf_counter()
        r = validate(img, 20.0, params, n=a.n, downsample=(2, 4), key=key)
        out = sorted(f"{x.descriptor} ({x.phase}) x{x.factor}" for x in r.outside)
        by_kind.setdefault(kind, []).append((r.counts["consistent"], r.counts["in_range"], r.counts["total"], out))
        print(f"{kind:<12} seed {seed:<5} consistent {r.counts['consistent']:>2}/{r.counts['total']} "
              f"in range {r.counts['in_range']:>2}  ({time.perf_counter() - t0:.0f} s)  outside: {', '.join(out) or '-'}",
              flush=True)
    for kind, rows in by_kind.items():
        cons = [c for c, _, _, _ in rows]
        inr = [i for _, i, _, _ in rows]
        always = set.intersection(*(set(o) for *_, o in rows)) if rows else set()
        print(f"{kind}: {len(rows)} images; consistent {min(cons)}-{max(cons)}, mean {np.mean(cons):.1f}; "
              f"in range {min(inr)}-{max(inr)}, mean {np.mean(inr):.1f}; outside in every one: "
              f"{', '.join(sorted(always)) or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
