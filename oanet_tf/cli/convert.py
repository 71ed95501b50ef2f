"""`python -m oanet_tf convert torchvision CHECKPOINT`: torchvision's Mask R-CNN weights -> a
model dir that evaluate, export, predict (and train, as model.init_from) read like a trained
one. See oanet_tf.conversion.torchvision for what is converted."""

from __future__ import annotations

import os

from oanet_tf.cli.common import add_config_arguments, config_from_args
from oanet_tf.dir_lock import exclusive_writer
from oanet_tf.errors import OANetError

SOURCES = ("torchvision",)
DEFAULT_CONFIG = "configs/coco_r50_torchvision.yaml"


def add_arguments(parser):
    parser.add_argument("source", choices=SOURCES, help="whose weights: torchvision")
    parser.add_argument("checkpoint",
                        help="torchvision's maskrcnn_resnet50_fpn state dict: the published "
                             ".pth (needs torch: pip install 'oanet_tf[torch]') or an .npz of "
                             "the same arrays")
    add_config_arguments(parser, DEFAULT_CONFIG)
    parser.add_argument("--model-dir", required=True,
                        help="the model dir to write (new; locked while converting, as train "
                             "locks it)")
    parser.add_argument("--categories", default=None,
                        help="COCO panoptic JSON (or a model dir's categories.json) whose "
                             "categories the model has (default: the config's "
                             "data.train.panoptic_json, else data.val.panoptic_json)")
    parser.add_argument("--stuff-from", default=None, metavar="MODEL_DIR",
                        help="an oanet_tf model dir of the same categories and config whose "
                             "stuff branch and SRM are copied (default: freshly initialised)")


def run(args) -> int:
    config = config_from_args(args)
    from oanet_tf.conversion.torchvision import convert
    from oanet_tf.data.panoptic_format import CategoryMap
    from oanet_tf.fileio import read_json

    path = args.categories or next(
        (p for p in (config.data.train.panoptic_json, config.data.val.panoptic_json)
         if p and os.path.isfile(p)), None)
    if not path:
        raise OANetError("no categories: pass --categories (a COCO panoptic JSON such as "
                         "panoptic_val2017.json), or set data.train.panoptic_json to one")
    try:
        data = read_json(path, "categories file")
        categories = CategoryMap.from_categories(
            data["categories"] if isinstance(data, dict) else data)
    except (ValueError, TypeError, KeyError) as err:
        raise OANetError(f"--categories {path}: no COCO categories ({err})") from None
    with exclusive_writer(args.model_dir, "convert"):
        weights = convert(args.checkpoint, config, categories, args.model_dir, args.stuff_from)
    print(f"converted {args.checkpoint} into {weights} ({categories.num_things} things, "
          f"{categories.num_stuff} stuff; stuff branch and SRM "
          f"{'from ' + args.stuff_from if args.stuff_from else 'freshly initialised'})")
    return 0
