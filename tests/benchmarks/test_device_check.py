"""scripts/device_check.sh in its CPU dry-run mode (what CI can run without a GPU): the report
and its table, rows from the model's own timings, and the time budget that keeps a cut run's
rows."""

import json
import os
import subprocess
import sys

import pytest

from harness import device_check
from harness.torch_peer import DEFAULT_TORCH_PYTHON, TorchClient

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT_TIMEOUT_S = 300  # a hang, not a slow machine, should fail the test


def test_dry_run_writes_every_row_and_the_table(tiny_files, tmp_path):
    out = tmp_path / "check.json"
    device_check.run(device_check.parse_args(
        ["--dry-run", "--xla", "off", "--precision", "float32", "--config", tiny_files[0],
         "--out", str(out)]))
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["complete"] and report["device"].startswith("CPU")
    rows = [(r["model"], r["mode"], r["batch"]) for r in report["rows"]]
    batch = device_check.DRY_RUN["train_batch"]
    assert rows[0] == ("oanet_tf", "train", batch)
    assert rows[1:] == [("oanet_tf", "infer", b) for b in device_check.DRY_RUN["infer_batches"]]
    train = report["rows"][0]
    assert train["value"] == pytest.approx(batch / train["seconds"])
    assert all(r["peak_memory_gib"] is None for r in report["rows"])  # no GPU
    table = (tmp_path / "check.md").read_text().splitlines()
    assert table[2].startswith("| model | mode |")
    assert table[4:] == [device_check.format_row(r) for r in report["rows"]]


def test_dry_run_breakdown_rows(tiny_files, tmp_path):
    """--breakdown adds each inference stage in float32 and bfloat16, and its table."""
    from harness import breakdown

    out = tmp_path / "check.json"
    args = device_check.parse_args(["--dry-run", "--precision", "float32", "--config",
                                    tiny_files[0], "--breakdown", "--out", str(out)])
    report = device_check.Report(str(out), {"device": "CPU", "size": list(args.size),
                                            "repeats": 1})
    device_check._breakdown_rows(args, report, tiny_files[0], tiny_files[1],
                                 device_check.Budget(3600))
    rows = json.loads(out.read_text())["breakdown"]
    stages = list(breakdown.INFERENCE_STAGES) + [breakdown.REMAINDER, breakdown.WHOLE]
    assert [(r["precision"], r["stage"]) for r in rows] == [
        (p, s) for p in device_check.BREAKDOWN_PRECISIONS for s in stages]
    assert rows[0]["trunk_ratio"] == pytest.approx(1.0)
    assert "| backbone |" in (tmp_path / "check.md").read_text()


def test_script_stops_at_its_budget_and_keeps_the_report(tmp_path):
    """The shell entry point runs the check; with no time left it starts no row and still
    writes the report, marked incomplete."""
    out = tmp_path / "cut.json"
    result = subprocess.run(
        ["bash", os.path.join(REPO, "scripts", "device_check.sh"), "--dry-run",
         "--budget-s", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
        env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["rows"] == [] and report["complete"] is False
    assert "cut at the budget" in result.stdout


def test_coco_categories_have_coco_counts():
    categories = device_check.coco_categories()
    assert sum(c["isthing"] for c in categories) == device_check.COCO_THINGS
    assert len(categories) == device_check.COCO_THINGS + device_check.COCO_STUFF
    assert len({c["id"] for c in categories}) == len(categories)


@pytest.mark.skipif(not os.path.isfile(DEFAULT_TORCH_PYTHON),
                    reason=f"no torch venv at {DEFAULT_TORCH_PYTHON} (see torch_peer.VENV_HINT)")
def test_torch_peer_runs_in_bfloat16_autocast_without_a_gpu():
    client = TorchClient(DEFAULT_TORCH_PYTHON, threads=1)
    try:
        client.prepare("infer", (64, 64), 1, 0, 0, device_check.COCO_THINGS,
                       precision="bfloat16")
        seconds = client.time(1)
        peak = client.peak_memory()
        with pytest.raises(RuntimeError, match="precision must be one of"):
            client.prepare("infer", (64, 64), 1, 0, 0, device_check.COCO_THINGS,
                           precision="float8")
    finally:
        client.close()
    assert seconds[0] > 0 and peak is None
