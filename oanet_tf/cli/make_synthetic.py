"""`python -m oanet_tf make-synthetic`: write the synthetic COCO panoptic dataset."""

from __future__ import annotations

import argparse
import re

from oanet_tf.data.synthetic import MIN_SIDE, SPLIT_ID_OFFSET, make_synthetic_dataset

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple:
    """'HEIGHTxWIDTH' -> (height, width); argparse shows the error message."""
    match = SIZE_PATTERN.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH in pixels, e.g. 128x128, got {text!r}")
    size = (int(match.group(1)), int(match.group(2)))
    if min(size) < MIN_SIDE:
        raise argparse.ArgumentTypeError(
            f"both sides must be at least {MIN_SIDE} pixels, got {size[0]}x{size[1]}")
    return size


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _image_count(text: str) -> int:
    value = _non_negative(text)
    if value >= SPLIT_ID_OFFSET:
        raise argparse.ArgumentTypeError(f"at most {SPLIT_ID_OFFSET - 1} images per split, "
                                         f"got {value}")
    return value


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    parser.add_argument("--train", type=_image_count, required=True, help="number of train images")
    parser.add_argument("--val", type=_image_count, required=True, help="number of val images")
    parser.add_argument("--seed", type=_non_negative, default=0,
                        help="random seed; the same seed writes identical files (default 0)")
    parser.add_argument("--size", type=parse_size, default=(128, 128), metavar="HxW",
                        help="image height x width in pixels (default 128x128)")


def run(args) -> int:
    summary = make_synthetic_dataset(args.out, args.train, args.val, args.seed, args.size,
                                     progress=True)
    height, width = summary["size"]
    print(f"wrote {summary['num_images']} images of {height}x{width} (seed {summary['seed']}) "
          f"in {summary['seconds']:.1f} s ({summary['images_per_minute']:.0f} images/minute)")
    for split in ("train", "val"):
        info = summary[split]
        print(f"{split}: {info['images']} images, {info['segments']} panoptic segments, "
              f"{info['instances']} instances")
        for key in ("image_dir", "panoptic_dir", "panoptic_json", "instances_json"):
            print(f"  {key:15s} {info[key]}")
    return 0
