"""What the entry scripts beside this package time and run (benchmark.py, ablations.py,
model_report.py, srm_table.py; scripts/device_check.sh runs device_check). Python puts the
entry script's folder, benchmarks/, on sys.path, so `import harness` finds this package;
oanet_tf is the pip-installed library, imported through its public modules. None of this is
in the oanet_tf wheel.

  inputs           default config and category files, HxW sizes, random images, instances,
                   JPEGs (numpy and PIL only: the torchvision peer builds the same inputs)
  timing           medians, timed calls, ours and a peer interleaved call by call
  report           benchmark.py's rows and table, the machine load
  torch_peer       torchvision's Mask R-CNN in a process of its own venv, and its client
  model_bench      our model: serve, infer and train calls on random inputs of a size, or on
                   given JPEGs and training batches (padded as the training pipeline pads)
  coco             the coco suite: real COCO JPEGs end to end, COCO-sized train batches
  breakdown        the breakdown suite: the parts of our inference and train step alone
  memory           the memory suite: peak memory of train steps, each model in a fresh
                   process
  roi_align        random FPN pyramids and boxes, RoIAlign as a timed function
  input_pipeline   images per second of the input pipeline, from files and from TFRecords
  evaluator        our PQ from files against hotcoco's and panopticapi's pq_compute
  suites           the suites benchmark.py composes (model, coco, breakdown, memory,
                   synthetic, precision, input, evaluator, ops)
  device_check     the GPU check (scripts/device_check.sh): train step, latency and peak GPU
                   memory beside torchvision on the same GPU; a CPU dry run
  ablation_tables  what each of the paper's ablation tables (1-5) compares
  ablation_runner  ablations.py's runs: train, score, reuse finished runs, write the tables

inputs, timing and torch_peer load no TensorFlow when imported: the torchvision peer, in its
own venv, imports them.
"""
