"""The paper's ablation tables (1-5) in miniature: train every configuration the chosen tables
compare for each seed, score each with the merge orders its rows compare, and write one
Markdown table per paper table (mean ± standard deviation over seeds of PQ, PQ_Th, PQ_St and
overlap ownership accuracy, beside the paper's COCO numbers). Runs already in --out are
reused, so an interrupted run continues; a line per run says what is left. The logic lives
in oanet_tf.ablations.

    python scripts/ablations.py [--tables 1 2 3 4 5] [--seeds 3]
        [--config configs/synthetic.yaml] [--set SECTION.KEY=VALUE ...] [--out runs/ablations]
"""

from __future__ import annotations

import argparse
import sys
import time

from oanet_tf.ablations.runner import run_ablations
from oanet_tf.ablations.tables import TABLES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, nargs="+", default=sorted(TABLES),
                        choices=sorted(TABLES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override one config value")
    parser.add_argument("--out", default="runs/ablations")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = run_ablations(args.config, args.overrides, args.tables, args.seeds, args.out)
    print("\n\n".join(report["tables"].values()))
    print(f"\n{len(report['trained'])} runs trained, {len(report['results']) - len(report['trained'])} "
          f"reused, in {time.perf_counter() - start:.0f} s; tables in {args.out}/tables.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
