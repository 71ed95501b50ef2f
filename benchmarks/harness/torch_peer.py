"""The peer: torchvision's Mask R-CNN R50-FPN in a process of its own (the benchmark venv's
python, which has torch and no TensorFlow), timing one prepared case per request, and the
client our process drives it with. Requests and replies are JSON lines on stdin / stdout.

The peer is maskrcnn_resnet50_fpn(weights=None, weights_backbone=None) with
box_score_thresh=0, so that the mask head always runs on 100 detections, and its transform
set to keep the input size (no resize), except for JPEG files (serve_files), which it resizes
with its default transform (short side 800, long side at most 1333) as it would serve them;
its train step is its losses, backward and an SGD step on random targets. A case runs on a
device ("cpu" or "cuda") and in a precision (float32, or bfloat16 under torch.autocast);
on a GPU each call waits for the device. The peer runs `python -m harness.torch_peer`;
the venv installs neither oanet_tf nor this harness, so the client puts both folders on the
child's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import oanet_tf
from harness.inputs import PIXEL_MAX, encoded_jpeg, random_images, random_instances
from harness.timing import timed_calls

DEFAULT_TORCH_PYTHON = "/tmp/bench-venv/bin/python"
VENV_HINT = ("create the benchmark venv with `python -m venv /tmp/bench-venv && "
             "/tmp/bench-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy pillow`, "
             "or pass --torch-python")
# OpenMP threads that spin while waiting lose most of their time when another process holds
# a core (measured here: ResNet-50 at 256x256 took 2.5 s instead of 0.2 s); passive waiting
# keeps torch's timings meaningful on a shared machine.
TORCH_OMP_WAIT_POLICY = "PASSIVE"
TORCH_LEARNING_RATE = 0.0025  # irrelevant to the timing; small enough to stay finite
TORCH_MOMENTUM = 0.9
TORCH_WEIGHT_DECAY = 1e-4
PRECISIONS = ("float32", "bfloat16")  # the peer's: plain, or under torch.autocast
# Where `import oanet_tf` finds the package, and `import harness` this harness: the folders
# that hold them.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(oanet_tf.__file__)))
HARNESS_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peer_env(omp_wait_policy: str = TORCH_OMP_WAIT_POLICY) -> dict:
    """The environment of a child process in the benchmark venv: this oanet_tf and this harness
    importable, OMP_WAIT_POLICY set ('' leaves it as it is)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, HARNESS_PARENT,
                                                    env.get("PYTHONPATH")) if p)
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    return env


def check_torch_python(python: str):
    if not os.path.isfile(python):
        raise SystemExit(f"error: torch python not found: {python}; {VENV_HINT}")


class TorchWorker:
    """Runs in the benchmark venv: builds torchvision's Mask R-CNN and prepares one call
    (`self.call`) of a case at a time."""

    def __init__(self, threads: int):
        import torch
        import torchvision

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.model = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, box_score_thresh=0.0)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=TORCH_LEARNING_RATE,
                                         momentum=TORCH_MOMENTUM,
                                         weight_decay=TORCH_WEIGHT_DECAY)
        self.versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "torch_threads": torch.get_num_threads(),
                         "torch_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                         "torchvision_parameters": sum(p.numel()
                                                       for p in self.model.parameters())}
        self.default_sizes = (self.model.transform.min_size, self.model.transform.max_size)
        self.call = None

    def prepare(self, mode, height, width, batch, seed, instances, num_things, files=(),
                device="cpu", precision="float32"):
        """mode: serve (JPEG bytes in), serve_files (the JPEG `files`, batch = len(files),
        resized by the default transform), infer, backbone_fpn, or train; on `device` in
        `precision` (PRECISIONS)."""
        torch = self.torch
        self.model.to(device)
        if mode == "serve_files":
            self.model.transform.min_size, self.model.transform.max_size = self.default_sizes
        else:
            # Keep the input size: the transform resizes so that the short side is min_size
            # unless the long side would exceed max_size; both are the input's own sides.
            self.model.transform.min_size = (min(height, width),)
            self.model.transform.max_size = max(height, width)
        self.model.train(mode == "train")
        if mode == "serve_files":
            encoded = []
            for path in files:
                with open(path, "rb") as f:
                    encoded.append(f.read())
            call = self._decoding_call(encoded)
        elif mode == "serve":
            call = self._decoding_call([encoded_jpeg(seed, height, width)] * batch)
        elif mode in ("infer", "backbone_fpn", "train"):
            pixels = random_images(seed, batch, height, width) / PIXEL_MAX
            images = [torch.from_numpy(p).permute(2, 0, 1).contiguous().to(device)
                      for p in pixels]
            if mode == "train":
                call = self._train_call(images, random_instances(
                    seed, batch, height, width, instances, num_things), device)
            elif mode == "infer":
                call = self._inference_call(self.model, images)
            else:
                call = self._inference_call(self.model.backbone,
                                            self.model.transform(images)[0].tensors)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        self.call = self._on_device(call, device, precision)

    def _inference_call(self, module, inputs):
        """module(inputs) under inference_mode."""
        torch = self.torch

        def call():
            with torch.inference_mode():
                return module(inputs)
        return call

    def _decoding_call(self, encoded: list):
        """Decode each JPEG (bytes) and run the model on the images, under inference_mode."""
        import torchvision

        torch = self.torch
        data = [torch.frombuffer(bytearray(e), dtype=torch.uint8) for e in encoded]

        def call():
            with torch.inference_mode():
                return self.model([torchvision.io.decode_jpeg(d).float() / PIXEL_MAX
                                   for d in data])
        return call

    def _train_call(self, images, instances, device):
        """One SGD step of the model's losses on `images` and random_instances' output."""
        torch = self.torch
        targets = [{"boxes": torch.from_numpy(b[:, [1, 0, 3, 2]].copy()).to(device),
                    "labels": torch.from_numpy(c.astype("int64")).to(device),
                    "masks": torch.from_numpy(m).to(device)}
                   for b, c, m in zip(*instances)]

        def call():
            losses = self.model(images, targets)
            total = sum(losses.values())
            self.optimizer.zero_grad()
            total.backward()
            self.optimizer.step()
            return total.detach().item()
        return call

    def _on_device(self, call, device: str, precision: str):
        """call under autocast in `precision`, waiting for the device before it returns."""
        torch = self.torch
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device_type = torch.device(device).type

        def on_device():
            with torch.autocast(device_type, dtype=torch.bfloat16,
                                enabled=precision == "bfloat16"):
                result = call()
            if device_type == "cuda":
                torch.cuda.synchronize()
            return result
        return on_device

    def peak_memory(self):
        """Peak bytes allocated on the GPU since the last call (None without one)."""
        torch = self.torch
        if not torch.cuda.is_available():
            return None
        peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return peak


def serve(threads: int) -> int:
    """The peer's loop: {"op": "versions" | "prepare" | "time", ...} per line."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything torch prints stays off the reply channel
    worker = TorchWorker(threads)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = _reply(worker, request.pop("op"), request)
        except Exception as error:  # the client raises it; the worker stays up
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


def _reply(worker: TorchWorker, op: str, request: dict) -> dict:
    if op == "versions":
        return worker.versions
    if op == "prepare":
        worker.prepare(**request)
        return {"ok": True}
    if op == "time":
        return {"seconds": timed_calls(worker.call, request["count"])}
    if op == "peak_memory":
        return {"bytes": worker.peak_memory()}
    return {"error": f"unknown op {op!r}"}


class TorchClient:
    """Our process's handle on the peer process."""

    def __init__(self, python: str, threads: int = 0,
                 omp_wait_policy: str = TORCH_OMP_WAIT_POLICY):
        check_torch_python(python)
        self.process = subprocess.Popen(
            [python, "-m", __name__, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=peer_env(omp_wait_policy))

    def request(self, op: str, **kwargs):
        self.process.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch worker exited (code {self.process.wait()}); "
                               f"see its messages above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"torch worker: {reply['error']}")
        return reply

    def prepare(self, mode, size, batch, seed, instances, num_things, files=(), device="cpu",
                precision="float32"):
        """Builds the case the next time() calls run (files: serve_files' JPEG paths)."""
        self.request("prepare", mode=mode, height=size[0], width=size[1], batch=batch,
                     seed=seed, instances=instances, num_things=num_things, files=list(files),
                     device=device, precision=precision)

    def peak_memory(self):
        """Peak GPU bytes the peer allocated since the last call (None without a GPU)."""
        return self.request("peak_memory")["bytes"]

    def time(self, count: int) -> list:
        """Seconds of `count` calls of the prepared case."""
        return self.request("time", count=count)["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: every core")
    return serve(parser.parse_args(argv).threads)


if __name__ == "__main__":
    sys.exit(main())
