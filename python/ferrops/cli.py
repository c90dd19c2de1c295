"""The ``ferrops`` command: ``ferrops info`` and ``ferrops bench``."""

from __future__ import annotations

import argparse
import sys

import ferrops


def _info() -> int:
    print(f"ferrops {ferrops.__version__}")
    print(f"SIMD level: {ferrops.simd_level()} (CPU supports {ferrops._core.detected_simd_level()})")
    print(f"threads: {ferrops.get_num_threads()}")
    try:
        import torch
    except ImportError:
        print("torch: not installed (NumPy inputs only)")
    else:
        cuda = torch.cuda.is_available()
        devices = f", {torch.cuda.device_count()} CUDA device(s)" if cuda else ""
        print(f"torch: {torch.__version__}, CUDA {'available' if cuda else 'not available'}{devices}")
    return 0


def _bench(families: list[str], quick: bool) -> int:
    from ferrops import _bench

    _bench.run(families or list(_bench.FAMILIES), quick)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferrops", description="Fast, spec-checked CPU kernels for ML.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, SIMD level, threads, torch/CUDA availability")
    bench = commands.add_parser("bench", help="time each kernel against its peer and print a markdown table")
    bench.add_argument("families", nargs="*", metavar="FAMILY", help="families to run (default: all)")
    bench.add_argument("--quick", action="store_true", help="fewer samples per kernel (same sizes)")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _info()
        return _bench(args.families, args.quick)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
