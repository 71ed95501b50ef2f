"""Run torchvision's maskrcnn_resnet50_fpn with the seeded weights of
`oanet_tf.conversion.torchvision_state` on the equivalence inputs and store its detections.

Needs torch and torchvision (not TensorFlow); run from the repository root:

    python scripts/torchvision_reference.py --sample-dir ../shared/coco/sample \
        [--min-size 320 --max-size 512] [--out tests/conversion/fixtures/...npz] \
        [--save-pth weights.pth]

It writes, per image (key prefix i0_, i1_, ...): the resized size, torchvision's detections in
resized pixels (boxes x1 y1 x2 y2, scores, labels 1..90), the 28x28 mask probabilities of the
best STORED_MASKS detections (uint16, p * MASK_QUANTUM; --all-masks: every detection, float32),
and the input digests, the sizes and the weights' checksum. --save-pth also writes the seeded
weights as a .pth state dict (to try `oanet_tf convert torchvision` on a real .pth).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from oanet_tf.conversion import equivalence as inputs  # noqa: E402  (numpy, Pillow only)
from oanet_tf.conversion import torchvision_state  # noqa: E402  (numpy only)

FIXTURE = os.path.join(ROOT, "tests", "conversion", "fixtures", "torchvision_r50_seed0.npz")


def build_model(min_size: int, max_size: int):
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=torchvision_state.TORCHVISION_NUM_CLASSES,
        min_size=min_size, max_size=max_size)
    state = torchvision_state.seeded_state_dict(inputs.WEIGHTS_SEED)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    return model.eval(), state


@torch.no_grad()
def detect(model, image: np.ndarray) -> dict:
    """torchvision's inference up to the 28x28 masks, in resized pixels."""
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0
    images, _ = model.transform([tensor])
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    detections, _ = model.roi_heads(features, proposals, images.image_sizes)
    out = detections[0]
    return {"size": np.asarray(images.image_sizes[0], np.int32),
            "padded": np.asarray(images.tensors.shape[-2:], np.int32),
            "boxes": out["boxes"].numpy(), "scores": out["scores"].numpy(),
            "labels": out["labels"].numpy().astype(np.int32),
            "masks": out["masks"][:, 0].numpy()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-dir", required=True)
    parser.add_argument("--min-size", type=int, default=inputs.CI_MIN_SIZE)
    parser.add_argument("--max-size", type=int, default=inputs.CI_MAX_SIZE)
    parser.add_argument("--out", default=FIXTURE)
    parser.add_argument("--all-masks", action="store_true",
                        help="store every detection's mask as float32 (a side-by-side run)")
    parser.add_argument("--save-pth", default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model, state = build_model(args.min_size, args.max_size)
    if args.save_pth:
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, args.save_pth)
    images = inputs.load_images(args.sample_dir)
    record = {"names": np.asarray(list(images)), "min_size": args.min_size,
              "max_size": args.max_size, "weights_seed": inputs.WEIGHTS_SEED,
              "weights_checksum": np.float64(sum(float(v.sum()) for v in state.values())),
              "torchvision_version": torchvision.__version__,
              "torch_version": torch.__version__}
    for i, (name, image) in enumerate(images.items()):
        start = time.perf_counter()
        result = detect(model, image)
        seconds = time.perf_counter() - start
        record[f"i{i}_digest"] = inputs.digest(image)
        record[f"i{i}_size"] = result["size"]
        record[f"i{i}_boxes"] = result["boxes"]
        record[f"i{i}_scores"] = result["scores"]
        record[f"i{i}_labels"] = result["labels"]
        if args.all_masks:
            record[f"i{i}_masks"] = result["masks"].astype(np.float32)
        else:
            masks = result["masks"][:inputs.STORED_MASKS]
            record[f"i{i}_masks_u16"] = np.round(masks * inputs.MASK_QUANTUM).astype(np.uint16)
        print(f"{name}: {image.shape[:2]} -> {tuple(result['size'])} (padded "
              f"{tuple(result['padded'])}), {len(result['scores'])} detections, best "
              f"{result['scores'][:3]}, {seconds:.1f} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **record)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
