"""The ``ferrops`` command: ``ferrops info``, ``ferrops bench``, ``ferrops coco-eval`` and ``ferrops lvis-eval``."""

from __future__ import annotations

import argparse
import sys

import ferrops


def _info() -> int:
    info = ferrops.info()
    print(f"ferrops {info['version']}")
    print(f"SIMD level: {info['simd_level']} (CPU supports {info['detected_simd_level']})")
    print(f"threads: {info['threads']}")
    bf16 = "AVX-512 BF16 dot products" if info["bf16_dot_products"] else "widened to float32"
    print(f"bfloat16 attention: {bf16}")
    if info["torch"] is None:
        print("torch: not installed (NumPy inputs only)")
    else:
        cuda = info["cuda_available"]
        devices = f", {info['cuda_devices']} CUDA device(s)" if cuda else ""
        print(f"torch: {info['torch']}, CUDA {'available' if cuda else 'not available'}{devices}")
    exceptions = ", ".join(f"{family} at {level}" for family, level in info["auto_level_exceptions"].items())
    print(f"CPU: {info['microarchitecture']}; automatic per-family levels: {exceptions or 'none'}")
    build = info["build"]
    print(
        f"built with: {build['rustc']}, profile {build['profile']} (opt-level {build['opt_level']}), {build['target']}"
    )
    print(f"compiled-in CPU features: {build['target_features']}")
    print(f"run-time SIMD levels: {build['dispatched_levels']}")
    print(f"build: commit {build['commit']}, {build['date']}, {build['pyo3']}")
    return 0


def _bench(families: list[str], quick: bool, levels: bool) -> int:
    from ferrops import _bench

    if levels:
        from ferrops._bench import levels as bench_levels

        bench_levels.run(families or list(_bench.FAMILIES), quick)
        return 0
    _bench.run(families or list(_bench.FAMILIES), quick)
    return 0


class _Progress:
    """Stage progress on stderr, shown only once the work has taken a second."""

    def __init__(self, stages: list[str]) -> None:
        import threading

        self._stages = stages
        self._current = 0
        self._shown = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(1.0, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _render(self) -> None:
        done = self._current
        bar = "#" * (4 * done) + "." * (4 * (len(self._stages) - done))
        label = self._stages[done] if done < len(self._stages) else "done"
        print(f"\r[{bar}] {done}/{len(self._stages)} {label:<24}", end="", file=sys.stderr, flush=True)

    def _show(self) -> None:
        with self._lock:
            self._shown = True
            self._render()

    def advance(self) -> None:
        with self._lock:
            self._current += 1
            if self._shown:
                self._render()

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._shown:
                print(file=sys.stderr)


_STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
               "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]  # fmt: skip
_KEYPOINT_STAT_NAMES = ["AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75", "AR_medium", "AR_large"]


def _coco_eval(
    gt_path: str,
    dt_path: str,
    iou_type: str | None,
    json_out: str | None,
    plot: str | None,
    per_class: bool = False,
    tide: bool = False,
) -> int:
    import contextlib
    import io
    import json

    from ferrops.coco import COCO, COCOeval, analysis
    from ferrops.detection import per_category_ap, plot_pr_curves

    if tide and iou_type == "keypoints":
        print("ferrops: --tide analyses boxes or masks: use it with --iou-type bbox or segm", file=sys.stderr)
        return 2

    progress = _Progress(["loading ground truth", "loading results", "evaluating", "accumulating"])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(gt_path)
            progress.advance()
            dt = gt.loadRes(dt_path)
            progress.advance()
            if iou_type is None:
                # What the results hold: masks when their records carry a
                # segmentation, else keypoints when they carry keypoints.
                leads = dt._data
                iou_type = (
                    "segm" if leads.leads_with_segmentation else "keypoints" if leads.leads_with_keypoints else "bbox"
                )
            if tide and iou_type == "keypoints":
                print("ferrops: --tide analyses boxes or masks: use it with --iou-type bbox or segm", file=sys.stderr)
                return 2
            ev = COCOeval(gt, dt, iou_type)  # type: ignore[arg-type]
            ev.evaluate()
            progress.advance()
            ev.accumulate()
            progress.advance()
    finally:
        progress.close()
    ev.summarize()
    if per_class:
        print()
        print(analysis.per_category_table(ev))
    if tide:
        print()
        print(analysis.tide(gt, dt, mode="mask" if iou_type == "segm" else "bbox").table())
    if json_out:
        report = {
            "ground_truth": gt_path,
            "results": dt_path,
            "iou_type": iou_type,
            "stats": dict(
                zip(_KEYPOINT_STAT_NAMES if iou_type == "keypoints" else _STAT_NAMES, (float(v) for v in ev.stats))
            ),
            "ap_per_category": {str(cat): ap for cat, ap in per_category_ap(ev).items()},
        }
        with open(json_out, "w") as f:
            json.dump(report, f, indent=2)
    if plot:
        plot_pr_curves(ev, plot)
    return 0


def _lvis_eval(
    gt_path: str, dt_path: str, iou_type: str | None, max_dets: int, fixed_ap: bool, json_out: str | None
) -> int:
    import contextlib
    import io
    import json

    from ferrops.lvis import LVIS, LVISEval, LVISResults

    with contextlib.redirect_stdout(io.StringIO()):
        gt = LVIS(gt_path)
        # Fixed AP (Dave et al. 2021): the top 10,000 per category, no per-image cap.
        dt = (
            LVISResults(gt, dt_path, max_dets=-1, max_dets_per_cat=10000)
            if fixed_ap
            else LVISResults(gt, dt_path, max_dets)
        )
        if iou_type is None:  # what the results hold
            iou_type = "segm" if dt._results.has_segmentation else "bbox"
        ev = LVISEval(gt, dt, iou_type)  # type: ignore[arg-type]
        ev.params.max_dets = -1 if fixed_ap else max_dets
        ev.run()
    ev.print_results()
    if json_out:
        report = {"ground_truth": gt_path, "results": dt_path, "iou_type": iou_type, "fixed_ap": fixed_ap}
        report["metrics"] = {key: float(value) for key, value in ev.get_results().items()}
        with open(json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferrops", description="Fast, spec-checked CPU kernels for ML.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, SIMD level, threads, torch/CUDA availability")
    bench = commands.add_parser("bench", help="time each kernel against its peer and print a markdown table")
    bench.add_argument("families", nargs="*", metavar="FAMILY", help="families to run (default: all)")
    bench.add_argument("--quick", action="store_true", help="fewer samples per kernel (same sizes)")
    bench.add_argument("--levels", action="store_true", help="time ferrops at every SIMD level the CPU supports")
    coco_eval = commands.add_parser("coco-eval", help="COCO evaluation of a results file (pycocotools' numbers)")
    coco_eval.add_argument("gt", metavar="GT.json", help="ground-truth annotations (COCO JSON)")
    coco_eval.add_argument(
        "dt", metavar="DT.json", help="detection results (JSON list of bbox/segmentation/keypoint records)"
    )
    coco_eval.add_argument(
        "--iou-type",
        choices=["bbox", "segm", "keypoints"],
        help="box IoU, mask IoU or keypoint OKS (default: segm when the results carry a 'segmentation', "
        "else keypoints when they carry 'keypoints', else bbox)",
    )
    coco_eval.add_argument("--json", metavar="OUT", help="also write the 12 stats and per-category AP as JSON")
    coco_eval.add_argument("--plot", metavar="PR.png", help="also plot precision-recall curves (needs matplotlib)")
    coco_eval.add_argument("--per-class", action="store_true", help="also print AP/AR per category")
    coco_eval.add_argument("--tide", action="store_true", help="also print the TIDE error breakdown (bbox, segm)")
    lvis_eval = commands.add_parser("lvis-eval", help="LVIS federated evaluation (lvis-api's numbers)")
    lvis_eval.add_argument("gt", metavar="GT.json", help="ground truth (LVIS JSON)")
    lvis_eval.add_argument("dt", metavar="DT.json", help="detection results (JSON list of bbox/segmentation records)")
    lvis_eval.add_argument(
        "--iou-type",
        choices=["bbox", "segm"],
        help="box IoU or mask IoU (default: segm when the results carry a 'segmentation', else bbox)",
    )
    lvis_eval.add_argument("--max-dets", type=int, default=300, help="detections kept per image (default 300)")
    lvis_eval.add_argument("--fixed-ap", action="store_true", help="Fixed AP: top 10,000 per category, no image cap")
    lvis_eval.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _info()
        if args.command == "coco-eval":
            return _coco_eval(args.gt, args.dt, args.iou_type, args.json, args.plot, args.per_class, args.tide)
        if args.command == "lvis-eval":
            return _lvis_eval(args.gt, args.dt, args.iou_type, args.max_dets, args.fixed_ap, args.json)
        return _bench(args.families, args.quick, args.levels)
    except (OSError, ImportError) as exc:
        print(f"ferrops: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
