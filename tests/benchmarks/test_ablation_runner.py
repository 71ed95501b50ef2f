"""benchmarks/ablations.py end to end on a tiny setting (Table 2's two configurations, one seed,
two training steps): one shard trains its run and leaves the tables to the end, the whole
plan then trains the rest; the table's shape and values, and that a further invocation reuses
the finished runs instead of training them again."""

import os
import subprocess
import sys

import pytest
from tests.tiny_model import tiny_config

from harness import ablation_runner as runner
from harness.ablation_tables import BASELINE, TABLES, VARIANTS, orders_by_variant
from oanet_tf.config import DETECTION, RANKING, save_config
from oanet_tf.data.splits import synthetic_arguments
from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.errors import ConfigError
from oanet_tf.fileio import read_json, write_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT_TIMEOUT_S = 1200  # a hang, not a slow machine, should fail the test
TINY_RUN = ("train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2",
            "train.reference_batch_size=2", "data.synthetic_train=4", "data.synthetic_val=2",
            "data.synthetic_size=[64, 64]", "data.short_side=64", "data.max_side=64",
            "data.buckets=[[64, 64]]", "data.scale_jitter=[1.0, 1.0]",
            "train.backup_every_steps=1")


def test_plan_trains_each_configuration_once_per_seed():
    runs = runner.plan([1, 2, 3, 4, 5], seeds=2)
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == 2 * len(VARIANTS)
    baseline = next(r for r in runs if r.variant == BASELINE)
    assert set(baseline.orders) == {DETECTION, RANKING}  # Tables 3 and 5 score the SRM merge
    assert orders_by_variant([2]) == {"stuff_plus_things": (DETECTION,), BASELINE: (DETECTION,)}
    with pytest.raises(ValueError, match="no ablation table"):
        runner.plan([6], 1)


def test_spread_is_the_sample_standard_deviation():
    assert runner.mean_and_spread([50.0]) == "50.0"
    # mean 2, deviations -1, 0, 1: variance 2 / (3 - 1) = 1
    assert runner.mean_and_spread([1.0, 2.0, 3.0]) == "2.0 ± 1.0"


def test_shard_is_k_of_n():
    assert runner.parse_shard("1/3") == (1, 3)
    for text in ("3/3", "-1/2", "1", "a/b"):
        with pytest.raises(ValueError, match="shard"):
            runner.parse_shard(text)


def _script(config, out, *args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "ablations.py"), "--tables", "2",
         "--seeds", "1", "--config", config, "--out", out, *args,
         *[a for override in TINY_RUN for a in ("--set", override)]],
        capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": REPO})


@pytest.mark.slow
def test_script_writes_table_and_reuses_finished_runs(tmp_path):
    config = str(tmp_path / "tiny.yaml")
    tiny = tiny_config(f"data.synthetic_dir={tmp_path / 'synthetic'}", *TINY_RUN)
    make_synthetic_dataset(**synthetic_arguments(tiny.data))  # as docs/results.md says: first
    save_config(tiny_config(f"data.synthetic_dir={tmp_path / 'synthetic'}"), config)
    out = str(tmp_path / "ablations")
    plan = [run.name for run in runner.plan([2], 1)]
    shard = _script(config, out, "--shard", "1/2")
    assert shard.returncode == 0, shard.stderr[-3000:]
    assert f"training {plan[1]}" in shard.stdout and shard.stdout.count("training ") == 1
    assert f"wait for 1 runs of other shards: {plan[0]}" in shard.stdout
    assert not os.path.exists(os.path.join(out, "table2.md"))

    first = _script(config, out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"training {plan[0]}" in first.stdout and "1 runs trained, 1 reused" in first.stdout

    table = open(os.path.join(out, "table2.md")).read().splitlines()
    rows = TABLES[2].rows
    assert table[0].startswith("### Table 2:") and len(table) == 4 + len(rows)
    header = [c.strip() for c in table[2].strip("|").split("|")]
    assert header == ["row", "merge", "PQ", "PQ_Th", "PQ_St", "ownership acc.", "paper PQ",
                      "paper PQ_Th", "paper PQ_St"]
    for line, row in zip(table[4:], rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        result = read_json(os.path.join(out, "runs", f"{row.variant}_seed0", "result.json"))
        scores = result["scores"][row.order]
        assert cells[:2] == [row.label, row.order]
        assert cells[2:6] == [f"{scores[c]:.1f}" for c in ("PQ", "PQ_Th", "PQ_St", "ownership")]
        assert cells[6:] == [f"{v:.1f}" for v in row.paper]

    # Again, in this process (no second TensorFlow start): nothing trains.
    logged = []
    second = runner.run_ablations(config, list(TINY_RUN), [2], 1, out, log=logged.append)
    assert second["trained"] == [] and all("reusing" in line for line in logged)
    assert open(os.path.join(out, "table2.md")).read().splitlines() == table

    # A finished run of other settings is not reused silently.
    with pytest.raises(ConfigError, match="train.steps_per_epoch"):
        runner.run_ablations(config, [*TINY_RUN, "train.steps_per_epoch=3"], [2], 1, out,
                             log=logged.append)


def test_finished_result_needs_every_order_and_the_same_config(tmp_path):
    config = tiny_config()
    run = runner.Run(BASELINE, 0, (DETECTION, RANKING))
    assert runner.finished_result(run, str(tmp_path), config) is None
    write_json(str(tmp_path / runner.RESULT_FILE),
               {"scores": {DETECTION: {}}, "config": config.to_dict()})
    assert runner.finished_result(run, str(tmp_path), config) is None  # ranking missing
    other = tiny_config("train.seed=5")
    with pytest.raises(ConfigError, match="train.seed"):
        runner.finished_result(run, str(tmp_path), other)
