"""Time oanet_tf's PQ from files against hotcoco's and panopticapi's pq_compute on the same
data and cores.

Generates a synthetic COCO panoptic set (500 images of 128x128 by default), a perturbed
prediction copy of it, then runs every evaluator on it (best of --repeats each, alternating,
after one untimed read of every PNG), reports how far each differs from pq_compute, prints
the times and writes them as JSON. The comparison lives in oanet_tf.benchmarking.evaluator (the package
is pip-installed).

    python scripts/benchmark_pq.py [--out-dir DIR] [--num-images 500] [--size 128 128]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

from oanet_tf.benchmarking.evaluator import IMAGES, SIZE, compare_with_pq_compute
from oanet_tf.fileio import write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="",
                        help="where to write the data (default: a temporary folder, removed)")
    parser.add_argument("--num-images", type=int, default=IMAGES)
    parser.add_argument("--size", type=int, nargs=2, default=SIZE,
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes of our numpy engine (pq_compute always uses every core)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each; best kept")
    parser.add_argument("--json", default="", help="report file (default: OUT_DIR/"
                        "benchmark_pq.json, or runs/benchmark_pq.json with a temporary folder)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        out_dir = args.out_dir or stack.enter_context(tempfile.TemporaryDirectory())
        report = compare_with_pq_compute(out_dir, args.num_images, tuple(args.size), args.seed,
                                         args.workers, args.repeats)
    json_path = args.json or os.path.join(args.out_dir or "runs", "benchmark_pq.json")
    write_json(json_path, report, indent=2)
    print(f"report written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
