"""The analysis on the real SPM files of ../shared/samples: counts, the profile the detector
chose, and overlays for the docs.

    PYTHONPATH=src .venv/bin/python benchmarks/spm_samples.py [--overlays docs/img] [--model DIR]

Runs :func:`particlesnn.pipeline.analyze_file` (defaults: model, auto profile, refinement) on
the files that the issues name: the ferroelectric film with about 20 particles
(``gwy/PTO_110_Virgin0001.gwy``; an h-maxima count finds 27 bumps of at least 8 nm prominence,
of which the shipped configuration outlines 21), the grating of 28 whole pillars (``nid/circles.nid``) and the
flat Au(111) terrace (``sxm/STM_Au-111_Flat.sxm``, which must give no particle). There is no
ground truth: the overlays are for checking by eye.

    PYTHONPATH=src .venv/bin/python benchmarks/spm_samples.py --all --compare MODEL [--overlays DIR]

``--all`` runs every sample file (the height maps and the plain images of ``../shared/samples``);
``--compare MODEL`` also runs ``MODEL`` on each and lists what it changes against the
configuration run first (the shipped one, or ``--model``): the objects of each matched one to
one at IoU >= 0.5, the rest counted as new (the compared model's) or gone (the first's), with
``--overlays`` a side-by-side picture per changed file (``cmp_<stem>.png``; objects without a
match in magenta). It is the
real-file term of the ship rules in docs/model.md ("no count changes by more than 10 % or 2
objects; the changed objects shown").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import _common as C
from particlesnn import matching
from particlesnn.export.overlay import render_overlay
from particlesnn.pipeline import AnalyzeOptions, analyze_file

SAMPLES = C.ROOT.parent / "shared" / "samples"
#: Files of ../shared/samples that are not images (sources, licenses).
NOT_IMAGES = (".md", ".txt.license", ".csv", ".py")
FILES = {"gwy/PTO_110_Virgin0001.gwy": "about 20 particles on a film",
         "nid/circles.nid": "28 whole pillars (plus cut ones at the border)",
         "sxm/STM_Au-111_Flat.sxm": "flat terrace: no particles"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overlays", type=Path, default=None, help="write spm_<stem>.png here")
    ap.add_argument("--model", default=None,
                    help="model folder or shipped name to run instead of the shipped configuration")
    ap.add_argument("--all", action="store_true", help="every sample file, not only the three named")
    ap.add_argument("--compare", default=None, metavar="MODEL",
                    help="also run this model folder / name and list the objects it changes")
    args = ap.parse_args(argv)
    if not SAMPLES.is_dir():
        print(f"{SAMPLES} not present: nothing to do")
        return 0
    if args.compare:
        return compare(args.model, args.compare, sample_files(args.all), args.overlays)
    rows = []
    files = FILES if not args.all else {rel: FILES.get(rel, "-") for rel in sample_files(True)}
    for rel, expect in files.items():
        t = time.perf_counter()
        r = analyze_file(SAMPLES / rel, AnalyzeOptions(model=args.model))
        dt = time.perf_counter() - t
        whole = int((~r.particles["touches_border"]).sum()) if "touches_border" in r.particles else None
        prof = r.info.get("profile")
        rows.append([rel, expect, str(int(r.labels.max())), str(whole), str(prof), f"{dt:.2f}"])
        if args.overlays:
            out = args.overlays / f"spm_{Path(rel).stem}.png"
            render_overlay(r.levelled, r.labels, out,
                           title=f"{Path(rel).name}: {int(r.labels.max())} particles")
        print(f"{rel}: {int(r.labels.max())} particles ({whole} not touching the border), profile "
              f"{prof}: {r.info.get('profile_reason')}", flush=True)
    print()
    print(C.markdown_table(["file", "expected", "particles", "not at border", "profile", "s"], rows))
    print(f"\nMachine: {C.machine()}.")
    return 0


def sample_files(every: bool) -> list[str]:
    """The sample files' paths relative to ../shared/samples (the three named, or all)."""
    if not every:
        return list(FILES)
    return sorted(str(f.relative_to(SAMPLES)) for f in SAMPLES.rglob("*")
                  if f.is_file() and "LICENSES" not in f.parts and not f.name.endswith(NOT_IMAGES))


def changes(a: np.ndarray, b: np.ndarray) -> tuple[int, list[int], list[int]]:
    """Objects of label images ``a`` and ``b`` matched one to one at IoU >= 0.5: (matched,
    labels of ``b`` without a match, labels of ``a`` without a match)."""
    m = matching.iou_match(b, a, 0.5)
    nb = sorted(set(range(1, int(b.max()) + 1)) - {int(i) + 1 for i in m.pairs[:, 0]})
    na = sorted(set(range(1, int(a.max()) + 1)) - {int(i) + 1 for i in m.pairs[:, 1]})
    return m.tp, nb, na


def compare(first, other: str, files: list[str], overlays: Path | None) -> int:
    """Run both configurations on every file and print what ``other`` changes."""
    rows = []
    for rel in files:
        try:
            a = analyze_file(SAMPLES / rel, AnalyzeOptions(model=first))
        except Exception as err:  # noqa: BLE001  (an unreadable sample is reported, not fatal)
            print(f"{rel}: skipped ({err})", flush=True)
            continue
        b = analyze_file(SAMPLES / rel, AnalyzeOptions(model=other))
        same, new, gone = changes(a.labels, b.labels)
        na, nb = int(a.labels.max()), int(b.labels.max())
        big = abs(nb - na) > max(2, 0.1 * na)
        rows.append([rel, a.levelled.unit or "-", str(na), str(nb), str(same), str(len(new)),
                     str(len(gone)), "**yes**" if big else "no"])
        areas = np.bincount(b.labels.ravel(), minlength=nb + 1)
        print(f"{rel}: {na} -> {nb} objects; {same} the same (IoU >= 0.5), {len(new)} new or "
              f"re-drawn (areas {sorted(int(areas[k]) for k in new)} px), {len(gone)} gone",
              flush=True)
        if overlays and (new or gone):
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            stem = Path(rel).name.replace(".", "_")
            left = render_overlay(a.levelled, a.labels, ids=False, flagged=gone,
                                  title=f"{Path(rel).name}: {na}")
            right = render_overlay(b.levelled, b.labels, ids=False, flagged=new,
                                   title=f"{Path(rel).name}: {nb} ({other})")
            overlays.mkdir(parents=True, exist_ok=True)
            plt.imsave(overlays / f"cmp_{stem}.png", np.concatenate([left, right], axis=1))
    print()
    print(C.markdown_table(["file", "unit", "first", "compared", "same", "new / re-drawn",
                            "gone", "count changed > 10 % and > 2"], rows))
    print(f"\nFirst: {first or 'the shipped configuration'}; compared: {other}. Machine: {C.machine()}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
