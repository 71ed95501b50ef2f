"""The breakdown suite: the multiply-adds counted from layer shapes on hand cases, its table
and rows from hand-made timings, and its stages on the tiny model (what is timed, counted and
subtracted; not the timing itself)."""

import math

import numpy as np
import pytest

from harness import breakdown, flops
from harness.model_bench import OursBench

SIZE = (64, 96)


def test_a_conv_and_a_dense_layer_counted_by_hand():
    import keras
    import tensorflow as tf

    conv = keras.layers.Conv2D(8, 3, strides=2, padding="same")
    grouped = keras.layers.Conv2D(6, (1, 3), padding="same", groups=2)
    dense = keras.layers.Dense(5)
    model = keras.Sequential([keras.Input((16, 12, 4)), conv, grouped,
                              keras.layers.Flatten(), dense])
    images = tf.zeros([2, 16, 12, 4])
    conv_macs = 2 * 8 * 6 * 3 * 3 * 4 * 8  # H_out * W_out * k_h * k_w * C_in * C_out
    grouped_macs = 2 * 8 * 6 * 1 * 3 * 8 * 6 // 2  # / groups
    dense_macs = 2 * (8 * 6 * 6) * 5  # rows * in * out
    assert flops.layer_macs(conv, (2, 16, 12, 4), (2, 8, 6, 8)) == conv_macs
    assert flops.layer_macs(dense, (2, 288), (2, 5)) == dense_macs
    assert flops.traced_macs(model, (images,), model) == conv_macs + grouped_macs + dense_macs
    per_roi = keras.layers.Dense(5)  # on [images, RoIs, features]: each RoI
    per_roi.build((None, None, 11))  # (an unbuilt layer's first call runs `call` twice)
    assert flops.traced_macs(per_roi, (tf.zeros([3, 7, 11]),), per_roi) == 3 * 7 * 11 * 5
    transposed = keras.layers.Conv2DTranspose(3, 2, strides=2)
    assert flops.layer_macs(transposed, (1, 4, 4, 5), (1, 8, 8, 3)) == 4 * 4 * 2 * 2 * 5 * 3
    assert flops.layer_macs(keras.layers.ReLU(), (1, 4), (1, 4)) == 0
    out = model(images)  # the layers run as before once the count is done
    assert out.shape == (2, 5) and "call" not in vars(conv)


def test_srm_macs_on_the_cells_it_computes():
    """GCN kernel 3, stride 2 on a 4x8 image (a 2x4 grid): cells (0, 0) and (1, 3) of 8
    covered (sparse), 1 of 4 categories present (the one channel given)."""
    from oanet_tf.modeling.srm_layer import SpatialRankingModule

    module = SpatialRankingModule(4, "gcn", 3, 2)
    module.build((1, 4, 8, 4))
    channels = np.zeros([1, 4, 8, 1], np.float32)
    channels[0, 0, 0, 0] = channels[0, 3, 7, 0] = 1
    # left_kx1 on the cells left_1xk reads ((0, 0), (0, 1), (1, 2), (1, 3)), right_1xk on
    # those right_kx1 reads ((0, 0), (1, 0), (0, 3), (1, 3)), from the present input
    first = 4 * 3 * 1 * 4 + 4 * 3 * 1 * 4
    last = 2 * (2 * 3 * 4 * 4)  # left_1xk, right_kx1: the covered cells
    assert breakdown.srm_macs(module, channels) == first + last
    every = np.ones([1, 4, 8, 2], np.float32)  # every cell covered: everything everywhere
    assert breakdown.srm_macs(module, every) == 2 * (8 * 3 * 2 * 4) + 2 * (8 * 3 * 4 * 4)


def test_table_shares_rates_and_rows():
    seconds = {"merge": 0.5, "backbone": 2.0, "box_head": 0.5, breakdown.WHOLE: 4.0}
    seconds[breakdown.REMAINDER] = 1.0
    macs = {"backbone": 80e9, "box_head": 10e9}
    table = breakdown.stage_table(seconds, macs)
    assert list(table) == ["backbone", "box_head", "merge", breakdown.REMAINDER,
                           breakdown.WHOLE]
    assert table["backbone"]["gmac_per_s"] == pytest.approx(40.0)
    assert table["box_head"]["trunk_ratio"] == pytest.approx(0.5)
    assert table["merge"]["share"] == pytest.approx(0.125) and table["merge"]["gmac"] is None
    rows = breakdown.breakdown_rows("infer", SIZE, 1, "bfloat16", table,
                                    {"box_head": "1000 proposals"})
    assert [r["case"] for r in rows][:2] == ["infer bfloat16 backbone", "infer bfloat16 box_head"]
    assert rows[1]["note"] == "1000 proposals" and rows[1]["trunk_ratio"] == pytest.approx(0.5)
    assert all(r["suite"] == "breakdown" and r["unit"] == "s" for r in rows)
    text = breakdown.markdown_table(rows)
    assert "| box_head | 0.500 | 12.5% | 10.0 | 20.0 | 0.50 |" in text


def test_every_stage_on_the_tiny_model(tiny_files):
    """Every inference stage runs and is counted; the remainder adds up. The train step's
    stages are only built (a backward pass is slow here)."""
    bench = OursBench(*tiny_files, size=SIZE)
    calls, macs, counts = breakdown.inference_stages(bench, 0)
    assert set(calls) == (set(breakdown.INFERENCE_STAGES) - {"box_selection"}
                          | {breakdown.ROI_HEADS, breakdown.WHOLE})
    assert set(macs) == {"backbone", "fpn", "rpn_head", "stuff_head", "box_head", "mask_head",
                         "srm"}
    assert all(macs[name] > 0 for name in macs if name != "srm")
    assert counts["proposals"] == bench.model.rpn.post_nms_topk_test
    seconds = breakdown.timed_stages(calls, 0, 1)
    assert breakdown.ROI_HEADS not in seconds and "box_selection" in seconds
    assert seconds[breakdown.REMAINDER] == pytest.approx(
        seconds[breakdown.WHOLE] - sum(seconds[s] for s in breakdown.INFERENCE_STAGES))
    assert all(s > 0 and math.isfinite(s) for name, s in seconds.items()
               if name not in (breakdown.REMAINDER, "box_selection"))
    table = breakdown.stage_table(seconds, macs)
    assert table["backbone"]["trunk_ratio"] == pytest.approx(1.0)
    calls, macs, counts = breakdown.train_stages(bench, 0, 2, SIZE, SIZE)
    assert set(calls) == set(breakdown.TRAIN_STAGES) | {breakdown.WHOLE}
    assert all(map(callable, calls.values()))
    assert set(macs) == {"backbone", "fpn", "rpn_head", "stuff_head", "box_head", "mask_head"}
