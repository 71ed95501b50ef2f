"""Compare a fixture of scripts/torchvision_reference.py (any sizes) with the converted seeded
weights: the side-by-side check at real sizes.

    python scripts/torchvision_compare.py FIXTURE.npz [--set-style overrides...]
"""
import sys, time, json
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.dirname(__import__('os').path.abspath(__file__))))
import numpy as np, tensorflow as tf
from oanet_tf.config import load_config
from oanet_tf.conversion import torchvision as conv, torchvision_state as ts
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.inference.image_predictor import ImageInputs
from tests.conversion import reference_inputs as ri
fx = np.load(sys.argv[1])
cfg = load_config('configs/coco_r50_torchvision.yaml', [f'data.short_side={int(fx["min_size"])}', f'data.max_side={int(fx["max_size"])}'] + sys.argv[2:])
cats = CategoryMap.from_categories(json.load(open('/work/shared/coco/sample/panoptic.json'))['categories'])
state = ts.seeded_state_dict(0)
print('checksum', sum(float(v.sum()) for v in state.values()), float(fx['weights_checksum']))
model = build_oanet(cfg.model, cfg.train, cats, load_backbone_weights=False)
conv.convert_into(model, state, cats)
slots = np.asarray(cats.thing_ids)
images = ri.load_images(__import__('os').environ['OANET_COCO_SAMPLE'])
inp = ImageInputs(cfg.data, 8192)
for i, (name, image) in enumerate(images.items()):
    t = time.time()
    pixels, size, orig = inp.from_pixels(tf.constant(image[None]))
    d = model.detect(pixels, size)
    n = int(d['num_detections'][0])
    boxes = d['boxes'][0, :n].numpy()[:, [1, 0, 3, 2]]
    scores = d['scores'][0, :n].numpy(); labels = slots[d['classes'][0, :n].numpy() - 1]
    masks = d['masks'][0, :n].numpy()
    tb, tsc, tl = fx[f'i{i}_boxes'], fx[f'i{i}_scores'], fx[f'i{i}_labels']
    print(name, 'size', size.numpy()[0], fx[f'i{i}_size'], 'n', n, len(tsc), f'{time.time()-t:.1f}s')
    if n == len(tsc):
        print('  labels equal', (labels == tl).all(), 'max box', np.abs(boxes - tb).max(), 'score', np.abs(scores - tsc).max())
        k = min(n, ri.STORED_MASKS)
        if f'i{i}_masks_u16' in fx:
            tm = fx[f'i{i}_masks_u16'][:k].astype(np.float32) / ri.MASK_QUANTUM
        else:
            tm = fx[f'i{i}_masks'][:k]
        print('  mask', np.abs(masks[:k] - tm).max())
    else:
        print(' ours', scores[:10], labels[:10]); print(' tv  ', tsc[:10], tl[:10])
