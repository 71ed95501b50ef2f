"""Flip each torchvision switch of configs/coco_r50_torchvision.yaml back to its default and
show what the equivalence check (tests/conversion/test_torchvision_equivalence.py) reports.

    OANET_COCO_SAMPLE=../shared/coco/sample python scripts/torchvision_flips.py [FIXTURE]
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oanet_tf.data.panoptic_format import CategoryMap  # noqa: E402
from oanet_tf.fileio import read_json  # noqa: E402
from tests.conversion import reference_inputs as ref  # noqa: E402
from tests.conversion import test_torchvision_equivalence as check  # noqa: E402

FLIPS = ("model.bottleneck_stride_in=1x1", "model.pixel_normalization=caffe_bgr",
         "model.anchor_offset=0.5", "model.anchor_cells=exact", "model.roi_align_aligned=true",
         "model.rpn_min_box_size=0", "model.test_min_box_size=0",
         "model.rpn_nms_per_level=false", "data.resize_rounding=nearest",
         "data.pad_value=[0,0,0]")


def main():
    sample = os.environ["OANET_COCO_SAMPLE"]
    path = sys.argv[1] if len(sys.argv) > 1 else ref.FIXTURE
    with np.load(path) as data:
        fixture = {key: data[key] for key in data.files}
    categories = CategoryMap.from_categories(
        read_json(os.path.join(sample, "panoptic.json"))["categories"])
    images = ref.load_images(sample)
    for flip in (None,) + FLIPS:
        config = check.torchvision_config(fixture, [flip] if flip else [])
        try:
            model = check.converted_model(config, categories)
        except Exception as err:  # a flip that no longer converts
            print(f"{flip}: conversion refused: {str(err)[:160]}")
            continue
        rows = check.differences(fixture, check.run_model(model, config, categories, images))
        for name, problems, box, score, mask in rows:
            print(f"{flip or 'as configured'} | {name} | "
                  f"{'; '.join(problems) or 'same'} | box {box} | score {score} | mask {mask}",
                  flush=True)


if __name__ == "__main__":
    main()
