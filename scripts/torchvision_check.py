"""Compare a fixture of scripts/torchvision_reference.py (torchvision's detections with the
seeded weights, at any sizes) with the same weights converted into oanet_tf; with --flips,
also with each torchvision switch of the config flipped back to its default.

    python scripts/torchvision_check.py FIXTURE.npz --sample-dir ../shared/coco/sample
        [--config configs/coco_r50_torchvision.yaml] [--flips]
"""

from __future__ import annotations

import argparse
import os
import time

from oanet_tf.conversion import equivalence as check
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.fileio import read_json

FLIPS = ("model.backbone.stride_in=1x1", "model.backbone.pixel_normalization=caffe_bgr",
         "model.rpn.anchor_offset=0.5", "model.rpn.anchor_cells=exact",
         "model.roi_heads.roi_align_aligned=true",
         "model.rpn.min_box_size=0", "model.roi_heads.test_min_box_size=0",
         "model.rpn.nms_per_level=false", "data.resize_rounding=nearest",
         "data.pad_value=[0,0,0]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture")
    parser.add_argument("--sample-dir", required=True)
    parser.add_argument("--config", default="configs/coco_r50_torchvision.yaml")
    parser.add_argument("--flips", action="store_true")
    args = parser.parse_args()
    fixture = check.read_fixture(args.fixture)
    categories = CategoryMap.from_categories(
        read_json(os.path.join(args.sample_dir, "panoptic.json"))["categories"])
    images = check.load_images(args.sample_dir)
    print(f"fixture: torchvision {fixture['torchvision_version']}, sizes "
          f"{int(fixture['min_size'])}/{int(fixture['max_size'])}")
    for flip in (None,) + (FLIPS if args.flips else ()):
        config = check.fixture_config(args.config, fixture, [flip] if flip else [])
        try:
            model = check.converted_model(config, categories)
        except Exception as err:  # a flip that no longer converts: say so, go on
            print(f"{flip}: conversion refused: {str(err)[:160]}")
            continue
        start = time.perf_counter()
        rows = check.differences(fixture, check.run_model(model, config, categories, images))
        seconds = time.perf_counter() - start
        for name, problems, box, score, mask in rows:
            print(f"{flip or 'as configured'} | {name} | {'; '.join(problems) or 'same'} | "
                  f"max diff: box {box} px, score {score}, mask {mask}", flush=True)
        print(f"  ({seconds:.1f} s for {len(rows)} images)")


if __name__ == "__main__":
    main()
