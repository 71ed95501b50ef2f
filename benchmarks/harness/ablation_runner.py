"""Train and score every configuration the chosen ablation tables compare, for each seed, and
write the tables (mean and standard deviation over seeds beside the paper's numbers).

Each run (a variant of `ablation_tables.VARIANTS` at one seed) lives in OUT/runs/<variant>_seed<k>:
its model dir (`model/`, so an interrupted training resumes from its backup) and, once
scored, `result.json`. A run whose result exists is reused, after checking that it was
trained with the same configuration; the seed sets `train.seed`, which keys the data order,
the initialisation and the sampling of anchors and RoIs.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

from harness.ablation_tables import TABLES, VARIANTS, orders_by_variant
from oanet_tf.config import Config, load_config, translate_flat_model_keys
from oanet_tf.data.splits import resolve_split
from oanet_tf.errors import ConfigError
from oanet_tf.fileio import atomic_open, read_json, write_json

RESULT_FILE = "result.json"
RUNS_DIR = "runs"
# (column, PQ group) of the tables, and the ownership column.
PQ_COLUMNS = (("PQ", "All"), ("PQ_Th", "Things"), ("PQ_St", "Stuff"))
OWNERSHIP = "ownership"
PERCENT = 100.0


@dataclasses.dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    orders: tuple  # merge orders its table rows need

    @property
    def name(self) -> str:
        return f"{self.variant}_seed{self.seed}"


def plan(table_numbers, seeds: int) -> list:
    """Every run the tables need, seed by seed (a cut run has whole seeds first)."""
    unknown = sorted(set(table_numbers) - set(TABLES))
    if unknown:
        raise ValueError(f"no ablation table {unknown}; tables are {sorted(TABLES)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    variants = orders_by_variant(table_numbers)
    return [Run(variant, seed, orders) for seed in range(seeds)
            for variant, orders in variants.items()]


def variant_config(config_path: str, overrides, variant: str, seed: int) -> Config:
    """The config of one run: the given config and overrides, the variant's, the seed."""
    spec = VARIANTS[variant]
    config = load_config(config_path, [*overrides, *spec.overrides, f"train.seed={seed}"])
    if spec.instances_from_panoptic:  # instance masks derived from the panoptic PNG
        config.data.train = dataclasses.replace(resolve_split(config.data, "train"),
                                                instances_json="")
    return config


def train_and_score(config: Config, run: Run, run_dir: str) -> dict:
    """Train the run's model dir (resuming it when a backup exists), score the val split
    with the run's merge orders (the training's own evaluation after its last epoch, when it
    scored them), write and return result.json; its seconds are the training's over every
    attempt plus the scoring."""
    import keras

    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.inference.split_scoring import evaluate_model
    from oanet_tf.training.trainer import train

    keras.backend.clear_session()
    training = train(config, os.path.join(run_dir, "model"), verbose=0)
    start = time.perf_counter()
    results = training.final_evaluation
    if results is None or not set(run.orders) <= set(results):
        val = PanopticDataset.from_split(resolve_split(config.data, "val"))
        results = evaluate_model(training.model, val, config.data, config.eval,
                                 config.eval.batch_size, orders=run.orders, progress=False)
    scores = {order: {**{column: results[order]["pq"][group]["pq"] * PERCENT
                         for column, group in PQ_COLUMNS},
                      OWNERSHIP: results[order]["ownership"]["accuracy"] * PERCENT}
              for order in run.orders}
    result = {"variant": run.variant, "seed": run.seed, "scores": scores,
              "seconds": training.seconds + time.perf_counter() - start,
              "config": config.to_dict()}
    write_json(os.path.join(run_dir, RESULT_FILE), result, indent=1)
    return result


def finished_result(run: Run, run_dir: str, config: Config) -> dict | None:
    """The run's result.json when it is done with this config and scored every order the
    run needs; None when it still has to run."""
    path = os.path.join(run_dir, RESULT_FILE)
    if not os.path.isfile(path):
        return None
    result = read_json(path)
    # A run scored before the model had its sections saved the flat layout.
    differences = _differences(translate_flat_model_keys(result.get("config", {}), path),
                               config.to_dict())
    if differences:
        raise ConfigError(f"{path}: trained with other values of {', '.join(differences)} "
                          f"than this run ({run.name}); use another --out, or remove {run_dir}")
    return result if set(run.orders) <= set(result["scores"]) else None


def _differences(saved: dict, current: dict, prefix: str = "") -> list:
    """Keys whose values differ between two config dicts; keys one of them lacks (a key
    added to the config since the run was trained) are not differences."""
    differences = []
    for key in saved.keys() & current.keys():
        if isinstance(saved[key], dict) and isinstance(current[key], dict):
            differences += _differences(saved[key], current[key], f"{prefix}{key}.")
        elif saved[key] != current[key]:
            differences.append(f"{prefix}{key}")
    return differences


def parse_shard(text: str) -> tuple:
    """'K/N' -> (K, N) with 0 <= K < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must be K/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= K < N")
    return index, count


def run_ablations(config_path: str, overrides, table_numbers, seeds: int, out: str,
                  log=print, shard: tuple = (0, 1)) -> dict:
    """Run (or reuse) every run of the tables, write OUT/table<N>.md and OUT/tables.md;
    -> {"results": {run name: result}, "tables": {N: markdown}, "trained": [run names],
    "waiting": [run names]}.

    With shard (K, N) this process trains only the runs whose plan index is K modulo N, so N
    processes (machines, GPUs, or cores) sharing OUT split the work; a run of another shard
    is reused when finished and otherwise waited for, and the tables are written by the
    process that finds every run finished (rerun any shard, or the whole plan, at the end).
    """
    runs = plan(table_numbers, seeds)
    shard_index, shard_count = shard
    mine = [run for index, run in enumerate(runs) if index % shard_count == shard_index]
    results, trained, waiting, durations = {}, [], [], []
    for index, run in enumerate(runs):
        run_dir = os.path.join(out, RUNS_DIR, run.name)
        config = variant_config(config_path, overrides, run.variant, run.seed)
        result = finished_result(run, run_dir, config)
        if result is not None:
            log(f"[{index + 1}/{len(runs)}] reusing {run.name}")
            results[run.name] = result
        elif run in mine:
            log(f"[{index + 1}/{len(runs)}] training {run.name} "
                f"({_left(mine, mine.index(run), durations)})")
            results[run.name] = train_and_score(config, run, run_dir)
            durations.append(results[run.name]["seconds"])
            trained.append(run.name)
        else:
            log(f"[{index + 1}/{len(runs)}] {run.name} is another shard's, not finished yet")
            waiting.append(run.name)
    if waiting:
        return {"results": results, "tables": {}, "trained": trained, "waiting": waiting}
    tables = {number: table_markdown(number, results, seeds) for number in table_numbers}
    for number, text in tables.items():
        with atomic_open(os.path.join(out, f"table{number}.md")) as f:
            f.write(text + "\n")
    with atomic_open(os.path.join(out, "tables.md")) as f:
        f.write("\n\n".join(tables.values()) + "\n")
    return {"results": results, "tables": tables, "trained": trained, "waiting": []}


def _left(runs, index: int, durations) -> str:
    remaining = len(runs) - index
    if not durations:
        return f"{remaining} runs left"
    per_run = statistics.mean(durations)
    return (f"{remaining} runs left, about {per_run * remaining / 60:.0f} min at "
            f"{per_run / 60:.1f} min per run")


def mean_and_spread(values) -> str:
    """'mean ± sample standard deviation' (the mean alone for one value), one decimal."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table_markdown(number: int, results: dict, seeds: int) -> str:
    """One paper table: per row, mean ± std over seeds of PQ, PQ_Th, PQ_St and ownership
    accuracy (percent), beside the paper's PQ, PQ_Th, PQ_St."""
    table = TABLES[number]
    columns = [column for column, _ in PQ_COLUMNS] + ["ownership acc."]
    lines = [f"### Table {number}: {table.title} ({seeds} seed{'s' if seeds > 1 else ''})",
             "",
             "| row | merge | " + " | ".join(columns) + " | paper PQ | paper PQ_Th | "
             "paper PQ_St |",
             "|---" * (2 + len(columns) + 3) + "|"]
    for row in table.rows:
        scores = [results[Run(row.variant, seed, ()).name]["scores"][row.order]
                  for seed in range(seeds)]
        cells = [mean_and_spread([s[column] for s in scores])
                 for column in [c for c, _ in PQ_COLUMNS] + [OWNERSHIP]]
        paper = [f"{v:.1f}" for v in row.paper] if row.paper else ["-"] * 3
        lines.append(f"| {row.label} | {row.order} | " + " | ".join(cells + paper) + " |")
    return "\n".join(lines)
