"""A persistent worker process that runs fuzz calls.

The parent sends a pickled `(target, args, kwargs)`; the worker materialises the
tagged values (`values.materialise`: torch tensors, strided layouts, which pickle
would flatten), calls `target` ("module:qualname") and answers with the outcome:
``("ok", plain result)`` or ``("raise", exception type, message)``. An abort or a
segfault ends the worker, a hang outlives the call's timeout: the parent reports
either as ``("crash", ...)`` / ``("hang", ...)`` and starts a fresh worker, which
costs one interpreter start instead of one per call.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class TensorOut:
    """A tensor result, as NumPy (bfloat16 widened to float32) plus its dtype and device."""

    array: np.ndarray
    dtype: str
    device: str


@dataclasses.dataclass(frozen=True)
class ObjectOut:
    """A result the parent cannot rebuild: its type's name and its attributes made plain."""

    type_name: str
    fields: dict[str, Any]


def plain(x: Any, depth: int = 0) -> Any:
    """`x` with tensors, dataclasses and objects replaced by picklable stand-ins."""
    if depth > 6:
        return ObjectOut(type(x).__name__, {})
    if isinstance(x, (np.ndarray, np.generic, int, float, complex, str, bytes, type(None))):
        return x
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        t = x.detach().cpu()
        wide = t.float() if str(t.dtype) == "torch.bfloat16" else t
        return TensorOut(wide.numpy().copy(), str(x.dtype).removeprefix("torch."), x.device.type)
    if isinstance(x, list):
        return [plain(v, depth + 1) for v in x]
    if isinstance(x, tuple):  # named tuples too
        return tuple(plain(v, depth + 1) for v in x)
    if isinstance(x, dict):
        return {k: plain(v, depth + 1) for k, v in x.items()}
    if dataclasses.is_dataclass(x):
        fields = {f.name: plain(getattr(x, f.name), depth + 1) for f in dataclasses.fields(x)}
        return ObjectOut(type(x).__name__, fields)
    return ObjectOut(type(x).__name__, {})


def resolve(target: str) -> Any:
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def write_message(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))


def serve() -> None:
    """The worker's loop: one call per message, until stdin closes."""
    from spec_tests.fuzz.values import materialise

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answer stream
    while True:
        try:
            target, args, kwargs = read_message(requests)
        except EOFError:
            return
        try:
            result = resolve(target)(*materialise(args), **materialise(kwargs))
            answer: tuple[Any, ...] = ("ok", plain(result))
        except BaseException as e:  # every outcome goes back to the parent, which judges it
            allowed = next((t.__name__ for t in (ValueError, TypeError, MemoryError) if isinstance(e, t)), None)
            answer = ("raise", type(e).__name__, allowed, str(e)[:2000])
        write_message(answers, answer)


class Worker:
    """The parent's handle on the worker: `call` runs one call with a timeout."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from spec_tests.fuzz.worker import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO_ROOT,
        )
        return self.process

    def stop(self) -> int | None:
        """Ends the worker (if alive) and returns its exit status."""
        if self.process is None:
            return None
        self.process.kill()
        status = self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.process = None
        return status

    def call(self, target: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float) -> tuple[Any, ...]:
        process = self.process if self.process is not None and self.process.poll() is None else self.start()
        assert process.stdin is not None and process.stdout is not None
        write_message(process.stdin, (target, args, kwargs))
        # The answer is read on a helper thread so a hang costs `timeout_s`, not forever.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(read_message, process.stdout)
            try:
                return future.result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                self.stop()
                self.restarts += 1
                return ("hang", timeout_s)
            except (EOFError, OSError):
                process.wait()  # the exit status of the crash, before stop() kills nothing
                status = process.returncode
                self.stop()
                self.restarts += 1
                return ("crash", status)
