"""Convert one split of a COCO panoptic dataset into sharded TFRecords: the same as
`python -m oanet_tf convert-tfrecords` (oanet_tf.cli.convert_tfrecords; the package is
pip-installed).

    python scripts/convert_to_tfrecords.py --config configs/coco_r50.yaml --split train \\
        --out data/coco_train_tfrecords --num-shards 64
    python scripts/convert_to_tfrecords.py --panoptic-json P.json --panoptic-dir P/ \\
        --image-dir I/ [--instances-json I.json] --out OUT --num-shards 4 [--skip-bad-images]
"""

import sys

from oanet_tf.cli.convert_tfrecords import main

if __name__ == "__main__":
    sys.exit(main())
