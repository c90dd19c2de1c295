"""GPU bench section for ``scripts/gpu-check.sh``: each family's CUDA path against
its peer on the same GPU, inputs resident on the device, as a markdown table.

ferrops keeps CUDA tensors on their device (the torch implementations in
``ferrops._torch_*``); the peers are torchvision's CUDA ops, torch's SDPA and
torchmetrics on CUDA tensors. Each side is warmed up, then timed over batches of
calls closed by ``torch.cuda.synchronize()``; the median batch is kept and the
two sides alternate, so clock and thermal drift hit both. ``--device cpu`` runs
the same rows on CPU tensors: a check of the code paths on a machine without a
GPU, not a benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

import ferrops


@dataclass(frozen=True)
class Row:
    family: str
    kernel: str
    size: str
    ferrops: Callable[[], Any]
    peer_name: str
    peer: Callable[[], Any]
    #: Largest difference between the two results, from their outputs.
    difference: Callable[[Any, Any], float]


def max_abs(a: Any, b: Any) -> float:
    a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    if a.shape != b.shape:
        return float("inf")
    return 0.0 if a.numel() == 0 else float((a - b).abs().nan_to_num(0.0).max())


def same_set(a: Any, b: Any) -> float:
    """0 when two index tensors keep the same elements (NMS), else how many differ."""
    left, right = set(torch.as_tensor(a).tolist()), set(torch.as_tensor(b).tolist())
    return float(len(left ^ right))


def map_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    return max(abs(float(a[k]) - float(b[k])) for k in ("map", "map_50", "map_75", "mar_100"))


def random_boxes(n: int, size: float, generator: torch.Generator, device: str) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.9
    wh = torch.rand(n, 2, generator=generator) * size * 0.2 + 1.0
    return torch.cat([xy, xy + wh], 1).to(device)


def rows(device: str) -> Iterator[Row]:
    import torchvision

    g = torch.Generator().manual_seed(0)
    tv = torchvision.ops

    a, b = random_boxes(4000, 1000.0, g, device), random_boxes(4000, 1000.0, g, device)
    yield Row("boxes", "box_iou", "4000x4000", lambda: ferrops.box_iou(a, b), "torchvision.ops.box_iou",
              lambda: tv.box_iou(a, b), max_abs)  # fmt: skip
    boxes = random_boxes(20000, 2000.0, g, device)
    scores = torch.rand(20000, generator=g).to(device)
    classes = torch.randint(0, 80, (20000,), generator=g).to(device)
    yield Row("boxes", "nms", "20000 boxes, 0.5", lambda: ferrops.nms(boxes, scores, 0.5), "torchvision.ops.nms",
              lambda: tv.nms(boxes, scores, 0.5), same_set)  # fmt: skip
    yield Row("boxes", "batched_nms", "20000 boxes, 80 classes, 0.5",
              lambda: ferrops.batched_nms(boxes, scores, classes, 0.5), "torchvision.ops.batched_nms",
              lambda: tv.batched_nms(boxes, scores, classes, 0.5), same_set)  # fmt: skip

    feats = torch.randn(2, 256, 64, 64, generator=g).to(device)
    rois = torch.cat([torch.randint(0, 2, (1000, 1), generator=g).float(), random_boxes(1000, 512.0, g, "cpu")], 1)
    rois = rois.to(device)
    yield Row("pooling", "roi_align", "2x256x64x64, 1000 boxes, 7x7, 1/8, ratio 2",
              lambda: ferrops.roi_align(feats, rois, 7, 0.125, 2, True), "torchvision.ops.roi_align",
              lambda: tv.roi_align(feats, rois, 7, 0.125, 2, True), max_abs)  # fmt: skip
    yield Row("pooling", "roi_pool", "2x256x64x64, 1000 boxes, 7x7, 1/8",
              lambda: ferrops.roi_pool(feats, rois, 7, 0.125), "torchvision.ops.roi_pool",
              lambda: tv.roi_pool(feats, rois, 7, 0.125), max_abs)  # fmt: skip
    x = torch.randn(16, 512, 64, 64, generator=g).to(device)

    def sppf_chain() -> torch.Tensor:
        f = torch.nn.functional
        y1 = f.max_pool2d(x, 5, 1, 2)
        y2 = f.max_pool2d(y1, 5, 1, 2)
        return torch.cat([x, y1, y2, f.max_pool2d(y2, 5, 1, 2)], 1)

    yield Row("pooling", "sppf", "16x512x64x64, k=5", lambda: ferrops.sppf(x, 5), "torch max_pool2d x3 + cat",
              sppf_chain, max_abs)  # fmt: skip

    dtype = torch.float16 if device == "cuda" else torch.float32
    q, k, v = (torch.randn(8, 16, 1024, 64, generator=g).to(device, dtype) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for causal in (False, True):
        yield Row("attention", "scaled_dot_product_attention", f"8x16x1024x64 {dtype}, causal={causal}",
                  lambda c=causal: ferrops.scaled_dot_product_attention(q, k, v, is_causal=c),
                  "torch SDPA", lambda c=causal: sdpa(q, k, v, is_causal=c), max_abs)  # fmt: skip

    from torchmetrics.functional.classification import multiclass_confusion_matrix

    target = torch.randint(0, 19, (8, 512, 1024), generator=g).to(device)
    pred = torch.where(torch.rand(target.shape, generator=g).to(device) < 0.8, target, (target + 1) % 19)
    yield Row("segmentation", "confusion_matrix", "8x512x1024, 19 classes",
              lambda: ferrops.confusion_matrix(target, pred, 19), "torchmetrics multiclass_confusion_matrix",
              lambda: multiclass_confusion_matrix(pred, target, 19), max_abs)  # fmt: skip

    yield from detection_rows(device, g)


def detection_rows(device: str, g: torch.Generator) -> Iterator[Row]:
    try:
        from torchmetrics.detection import MeanAveragePrecision as PeerMAP
    except ImportError:
        return
    images = []
    for _ in range(200):
        gt = random_boxes(10, 640.0, g, device)
        jittered = gt + (torch.randn(gt.shape, generator=g) * 4).to(device)
        # Corners re-sorted so that every jittered box stays a valid xyxy box.
        jittered = torch.cat(
            [torch.minimum(jittered[:, :2], jittered[:, 2:]), torch.maximum(jittered[:, :2], jittered[:, 2:])], 1
        )
        det = torch.cat([jittered, random_boxes(20, 640.0, g, device)])
        images.append(
            (
                {"boxes": det, "scores": torch.rand(len(det), generator=g).to(device),
                 "labels": torch.randint(0, 5, (len(det),), generator=g).to(device)},
                {"boxes": gt, "labels": torch.randint(0, 5, (len(gt),), generator=g).to(device)},
            )
        )  # fmt: skip

    def evaluate(metric_class: Any) -> Callable[[], Any]:
        def run() -> Any:
            metric = metric_class(iou_type="bbox")
            for det, gt in images:
                metric.update([det], [gt])
            return metric.compute()

        return run

    try:
        peer = evaluate(PeerMAP)
        peer()  # torchmetrics needs a COCO backend (pycocotools or faster-coco-eval)
    except (ImportError, ModuleNotFoundError) as exc:
        print(f"detection: torchmetrics MeanAveragePrecision unavailable ({exc})", file=sys.stderr)
        return
    yield Row("detection", "MeanAveragePrecision", "200 images, 10 gt / 30 dt, 5 classes",
              evaluate(ferrops.MeanAveragePrecision), "torchmetrics MeanAveragePrecision", peer,
              map_difference)  # fmt: skip


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, number: int) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    return (time.perf_counter() - start) / number


def compare(row: Row, device: str, rounds: int) -> tuple[float, float, float]:
    ours, theirs = row.ferrops(), row.peer()  # warm-up: kernels load, caches fill
    sync(device)
    difference = row.difference(ours, theirs)
    first = timed(row.ferrops, device, 1)
    number = max(1, int(0.05 / max(first, 1e-6)))
    ferrops_times, peer_times = [], []
    for _ in range(rounds):
        ferrops_times.append(timed(row.ferrops, device, number))
        peer_times.append(timed(row.peer, device, number))
    return statistics.median(ferrops_times), statistics.median(peer_times), difference


def format_seconds(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (code-path check, not a benchmark)"
    lines = [
        f"ferrops {ferrops.__version__}, torch {torch.__version__}, device: {name}",
        "",
        "| family | kernel | size | ferrops | peer | peer time | speed-up | max diff |",
        "|" + "---|" * 8,
    ]
    failures = 0
    for row in rows(args.device):
        try:
            ours, theirs, diff = compare(row, args.device, args.rounds)
        except Exception as exc:  # one broken row must not hide the others
            failures += 1
            lines.append(f"| {row.family} | {row.kernel} | {row.size} | error: {exc!r} | {row.peer_name} | | | |")
            continue
        lines.append(
            f"| {row.family} | {row.kernel} | {row.size} | {format_seconds(ours)} | {row.peer_name} | "
            f"{format_seconds(theirs)} | {theirs / ours:.2f}x | {diff:.3g} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    if failures:
        print(f"gpu_bench: {failures} row(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
