"""Benchmark: a 40-point load grid swept inside one ngspice process vs one process per point.

Both variants simulate the same two-inverter chain (both stage outputs loaded to mid-rail)
over the same input sweep; the script checks they agree, prints absolute wall times and the
ratio, and ends with one line of JSON.

    python scripts/bench_characterize.py [--quick] [--tech builtin|sky130] [--points 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from memspice.characterize.decks import ChainCopy, family_deck, stage_node
    from memspice.characterize.presets import default_sizing
    from memspice.sim import SimOptions, simulate, simulate_many
    from memspice.tech.technology import builtin, sky130

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="coarser input step (5 mV) and no parallel per-point run; well under a minute")
    parser.add_argument("--tech", choices=("builtin", "sky130"), default="builtin")
    parser.add_argument("--points", type=int, default=40, help="load grid points (default 40)")
    args = parser.parse_args(argv)

    tech = builtin() if args.tech == "builtin" else sky130("tt")
    sizing = default_sizing(args.tech)
    step = 5e-3 if args.quick else 0.5e-3
    loads = [float(r) for r in np.geomspace(1e5, 2e6, args.points)]
    options = SimOptions(timeout_s=600)

    start = time.perf_counter()
    together = simulate(family_deck(tech, [ChainCopy(sizing, r) for r in loads], step_v=step), options)
    one_process_s = time.perf_counter() - start

    decks = [family_deck(tech, [ChainCopy(sizing, r)], step_v=step) for r in loads]
    start = time.perf_counter()
    serial = simulate_many(decks, options, workers=1)
    per_point_serial_s = time.perf_counter() - start
    per_point_parallel_s = float("nan")
    parallel = []
    if not args.quick:
        start = time.perf_counter()
        parallel = simulate_many(decks, options)
        per_point_parallel_s = time.perf_counter() - start

    worst = 0.0
    plot = together.plots[0]
    for k, result in enumerate(serial):
        if isinstance(result, Exception):
            raise result
        worst = max(worst, float(np.max(np.abs(result.plots[0][stage_node(0, 2)] - plot[stage_node(k, 2)]))))
    for result in parallel:
        if isinstance(result, Exception):
            raise result

    n_points = plot.n_points
    print(f"technology {args.tech}, {args.points} loads x {n_points} input points x 2 stages")
    print(f"one ngspice process, all loads: {one_process_s:.3f} s")
    print(f"one process per load, serial:   {per_point_serial_s:.3f} s  (ratio {per_point_serial_s / one_process_s:.2f}x)")
    if parallel:
        print(f"one process per load, parallel: {per_point_parallel_s:.3f} s  "
              f"(ratio {per_point_parallel_s / one_process_s:.2f}x)")
    print(f"largest output difference between the two: {worst:.3g} V")
    print(json.dumps({
        "bench": "characterize_load_grid", "tech": args.tech, "points": args.points, "input_points": n_points,
        "one_process_s": round(one_process_s, 4), "per_point_serial_s": round(per_point_serial_s, 4),
        "per_point_parallel_s": round(per_point_parallel_s, 4) if parallel else None,
        "ratio_serial": round(per_point_serial_s / one_process_s, 3),
        "ratio_parallel": round(per_point_parallel_s / one_process_s, 3) if parallel else None, "max_diff_v": worst,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
