"""What each of the paper's five ablation tables compares: its rows, each a trained
configuration (a variant) scored with one merge order, beside the paper's COCO numbers.

The paper's numbers are R50 on COCO val (Liu et al., CVPR 2019, Tables 1-5; the same
figures as ../shared/SPEC.md): (PQ, PQ_Th, PQ_St), None where the paper gives none. Tables
1, 2 and 4 compare trainings under the heuristic merge (their baseline rows equal Table 3's
baseline, 37.2); Tables 3 and 5 compare merges and SRM kernels.
"""

from __future__ import annotations

import dataclasses

from oanet_tf.config import (DETECTION, GCN_KERNEL, KERNEL_1X1, KERNEL_3X3, RANKING,
                             SEPARATE, SHARED_BACKBONE, STUFF_PLUS_THINGS)

BASELINE = "baseline"  # the config as given: every table's reference configuration


@dataclasses.dataclass(frozen=True)
class Variant:
    """A trained configuration: config overrides, and whether instance masks come from the
    panoptic PNG instead of the instances JSON (Table 3's "w/ pano-instance GT")."""

    overrides: tuple = ()
    instances_from_panoptic: bool = False


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    variant: str
    order: str  # the merge order it is scored with
    paper: tuple | None  # (PQ, PQ_Th, PQ_St) on COCO, R50


@dataclasses.dataclass(frozen=True)
class Table:
    number: int
    title: str
    rows: tuple


LOSS_WEIGHTS = (0.2, 0.25, 0.33, 0.5, 0.75, 1.0)  # Table 1's lambda of Eq. 1
BASELINE_LOSS_WEIGHT = 0.25

VARIANTS = {
    BASELINE: Variant(),
    **{f"seg_loss_weight_{w:g}": Variant((f"train.seg_loss_weight={w:g}",))
       for w in LOSS_WEIGHTS if w != BASELINE_LOSS_WEIGHT},
    "stuff_plus_things": Variant((f"model.stuff_branch.supervision={STUFF_PLUS_THINGS}",)),
    "pano_instance_gt": Variant(instances_from_panoptic=True),
    "sharing_none": Variant((f"model.sharing={SEPARATE}",)),
    "sharing_backbone": Variant((f"model.sharing={SHARED_BACKBONE}",)),
    "srm_kernel_1x1": Variant((f"model.srm.kernel={KERNEL_1X1}",)),
    "srm_kernel_3x3": Variant((f"model.srm.kernel={KERNEL_3X3}",)),
}


def _loss_weight_variant(weight: float) -> str:
    return BASELINE if weight == BASELINE_LOSS_WEIGHT else f"seg_loss_weight_{weight:g}"


TABLES = {
    1: Table(1, "Loss balance lambda of Eq. 1 (heuristic merge)", tuple(
        Row(f"lambda = {w:g}", _loss_weight_variant(w), DETECTION, paper)
        for w, paper in zip(LOSS_WEIGHTS, ((36.9, 45.0, 24.6), (37.2, 45.4, 24.9),
                                           (36.9, 44.4, 25.4), (36.5, 43.5, 25.9),
                                           (35.3, 41.9, 25.4), None)))),
    2: Table(2, "Stuff branch supervision (heuristic merge)", (
        Row("stuff classes + one things class", "stuff_plus_things", DETECTION,
            (36.7, 43.8, 25.9)),
        Row("all classes (object context)", BASELINE, DETECTION, (37.2, 45.4, 24.9)))),
    3: Table(3, "Spatial ranking module and instance ground truth", (
        Row("baseline (heuristic merge)", BASELINE, DETECTION, (37.2, 45.4, 24.9)),
        Row("w/ pano-instance GT (heuristic merge)", "pano_instance_gt", DETECTION,
            (36.1, 43.5, 24.9)),
        Row("w/ spatial ranking module", BASELINE, RANKING, (39.0, 48.3, 24.9)))),
    4: Table(4, "Feature sharing between the branches (heuristic merge)", (
        Row("no sharing", "sharing_none", DETECTION, (36.5, 44.4, 24.6)),
        Row("backbone (res1-res5)", "sharing_backbone", DETECTION, (37.0, 44.8, 25.2)),
        Row("backbone + FPN (skip connections)", BASELINE, DETECTION, (37.2, 45.4, 24.9)))),
    5: Table(5, "SRM kernel (SRM merge)", (
        Row("1x1", "srm_kernel_1x1", RANKING, (38.4, 47.4, 24.9)),
        Row("3x3", "srm_kernel_3x3", RANKING, (38.7, 47.8, 24.9)),
        Row(f"1x7 + 7x1 ({GCN_KERNEL})", BASELINE, RANKING, (39.0, 48.3, 24.9)))),
}


def orders_by_variant(table_numbers) -> dict:
    """{variant: merge orders its rows need}, variants in the order the tables list them."""
    orders = {}
    for number in table_numbers:
        for row in TABLES[number].rows:
            needed = orders.setdefault(row.variant, [])
            if row.order not in needed:
                needed.append(row.order)
    return {variant: tuple(needed) for variant, needed in orders.items()}
