"""The paper's ablation tables (1-5) in miniature: train every configuration the chosen tables
compare for each seed, score each with the merge orders its rows compare, and write one
Markdown table per paper table (mean ± standard deviation over seeds of PQ, PQ_Th, PQ_St and
overlap ownership accuracy, beside the paper's COCO numbers). Runs already in --out are
reused, so an interrupted run continues; a line per run says what is left. The logic lives
in harness.ablation_runner and harness.ablation_tables. --shard K/N splits the runs between
N processes sharing --out (one per GPU or machine); the tables are written once every run is
finished.

    python benchmarks/ablations.py [--tables 1 2 3 4 5] [--seeds 3]
        [--config configs/synthetic.yaml] [--set SECTION.KEY=VALUE ...] [--out runs/ablations]
        [--shard K/N]
"""

from __future__ import annotations

import argparse
import sys
import time

from harness.ablation_runner import parse_shard, run_ablations
from harness.ablation_tables import TABLES


def _shard(text: str) -> tuple:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, nargs="+", default=sorted(TABLES),
                        choices=sorted(TABLES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override one config value")
    parser.add_argument("--out", default="runs/ablations")
    parser.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N",
                        help="train only every N-th run, starting at K (0-based)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = run_ablations(args.config, args.overrides, args.tables, args.seeds, args.out,
                           shard=args.shard)
    counts = (f"{len(report['trained'])} runs trained, "
              f"{len(report['results']) - len(report['trained'])} reused, "
              f"in {time.perf_counter() - start:.0f} s")
    if report["waiting"]:
        print(f"\n{counts}; the tables wait for {len(report['waiting'])} runs of other shards: "
              f"{', '.join(report['waiting'])}")
        return 0
    print("\n\n".join(report["tables"].values()))
    print(f"\n{counts}; tables in {args.out}/tables.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
