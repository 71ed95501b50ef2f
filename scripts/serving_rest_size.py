"""Size of TF Serving's REST answer for some images, per image signature: the dense
`panoptic` map (serving_default) against the PNG bytes (serving_png). The model dir is
exported to a temporary folder, loaded back with TensorFlow alone, and each signature's
outputs written as TF Serving's REST encoder writes them (`oanet_tf.export.rest_json`;
tensorflow_model_server itself is not needed).

    python scripts/serving_rest_size.py --model-dir tests/fixtures/trained_small \
        /work/shared/coco/sample/images/*.jpg
"""

from __future__ import annotations

import argparse
import tempfile

import tensorflow as tf

from oanet_tf.export import saved_model as export_lib
from oanet_tf.export.rest_json import columnar_body, row_body
from oanet_tf.inference.trained_model import load_trained_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="encoded image files")
    parser.add_argument("--model-dir", required=True)
    args = parser.parse_args()
    trained = load_trained_model(args.model_dir)
    data = [open(path, "rb").read() for path in args.images]
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = export_lib.export_saved_model(
            trained.model, trained.categories, trained.config.data, trained.config.eval,
            f"{tmp}/1", trained.config.export.max_image_side)
        loaded = tf.saved_model.load(export_dir)
        print(f"{len(data)} images: {', '.join(args.images)}")
        print(f"{'signature':18s} {'columnar (outputs)':>20s} {'row (predictions)':>18s}")
        for name in (export_lib.IMAGES_SIGNATURE, export_lib.PNG_SIGNATURE):
            outputs = loaded.signatures[name](images=tf.constant(data))
            arrays = {k: v.numpy() for k, v in outputs.items()}
            print(f"{name:18s} {len(columnar_body(arrays).encode()):>20,d} "
                  f"{len(row_body(arrays).encode()):>18,d}  bytes")


if __name__ == "__main__":
    main()
