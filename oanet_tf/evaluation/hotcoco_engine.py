"""hotcoco (Rust, PyPI) as the engine of PQ from files, where it is installed.

hotcoco's `panoptic.pq_compute` follows panopticapi's rules and matches it to float rounding
(its own parity checks, and tests/evaluation/test_pq.py against pq_compute), at several times
our numpy evaluator's speed. Its results are brought to `PQAccumulator.result`'s layout.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io

PER_CLASS_KEYS = ("pq", "sq", "rq", "tp", "fp", "fn")
GROUP_KEYS = ("pq", "sq", "rq", "n")


def available() -> bool:
    return importlib.util.find_spec("hotcoco") is not None


def version() -> str:
    import hotcoco

    return hotcoco.__version__


def evaluate(gt_json: str, gt_dir: str, pred_json: str, pred_dir: str) -> dict:
    """PQ of the predictions -> {"All" | "Things" | "Stuff": {pq, sq, rq, n}, "per_class":
    {id: {pq, sq, rq, tp, fp, fn}}}; raises what hotcoco raises on bad input."""
    from hotcoco import panoptic

    with contextlib.redirect_stdout(io.StringIO()):  # it prints panopticapi's table
        raw = panoptic.pq_compute(gt_json, pred_json, gt_dir, pred_dir)
    result = {name: {key: raw[name][key] for key in GROUP_KEYS}
              for name in ("All", "Things", "Stuff")}
    for group in result.values():
        group["n"] = int(group["n"])
    result["per_class"] = {int(cid): _per_class_row(row) for cid, row in raw["per_class"].items()}
    return result


def _per_class_row(row: dict) -> dict:
    """hotcoco marks a category that never occurs (TP + FP + FN = 0) with -1; pq_compute and
    PQAccumulator give it 0."""
    row = {key: row[key] for key in PER_CLASS_KEYS}
    if row["tp"] + row["fp"] + row["fn"] == 0:
        row.update(pq=0.0, sq=0.0, rq=0.0)
    return row
