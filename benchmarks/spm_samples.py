"""The analysis on the real SPM files of ../shared/samples: counts, the profile the detector
chose, and overlays for the docs.

    PYTHONPATH=src .venv/bin/python benchmarks/spm_samples.py [--overlays docs/img] [--model DIR]

Runs :func:`particlesnn.pipeline.analyze_file` (defaults: model, auto profile, refinement) on
the files that the issues name: the ferroelectric film with about 20 particles
(``gwy/PTO_110_Virgin0001.gwy``; an h-maxima count finds 27 bumps of at least 8 nm prominence,
of which the shipped configuration outlines 21), the grating of 28 whole pillars (``nid/circles.nid``) and the
flat Au(111) terrace (``sxm/STM_Au-111_Flat.sxm``, which must give no particle). There is no
ground truth: the overlays are for checking by eye.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common as C
from particlesnn.export.overlay import render_overlay
from particlesnn.pipeline import AnalyzeOptions, analyze_file

SAMPLES = C.ROOT.parent / "shared" / "samples"
FILES = {"gwy/PTO_110_Virgin0001.gwy": "about 20 particles on a film",
         "nid/circles.nid": "28 whole pillars (plus cut ones at the border)",
         "sxm/STM_Au-111_Flat.sxm": "flat terrace: no particles"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overlays", type=Path, default=None, help="write spm_<stem>.png here")
    ap.add_argument("--model", default=None,
                    help="model folder or shipped name to run instead of the shipped configuration")
    args = ap.parse_args(argv)
    if not SAMPLES.is_dir():
        print(f"{SAMPLES} not present: nothing to do")
        return 0
    rows = []
    for rel, expect in FILES.items():
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


if __name__ == "__main__":
    raise SystemExit(main())
