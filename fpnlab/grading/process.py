"""A unit's own process: started fresh, fed requests, read with a time limit, ended.

    worker = UnitProcess("iou", Setup(package=Path("graded")))
    answer = worker.ask({"call": ..., "args": [...]}, time_limit_s=120)    # plain data, or AssertionError
    worker.close()

The process imports only the package in `setup.package` (a student's fpnlab, or the grader's copy with the
student's units spliced in) and fpnlab.grading.worker from it; it starts in an empty folder of its own.
Whatever it does, this side only reads frames of plain data from it (fpnlab.grading.frames).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fpnlab import outputs
from fpnlab.grading.frames import FrameError, read_frame, write_frame

BOOT = "import sys; sys.path[:0] = sys.argv[2].split('|'); from fpnlab.grading.worker import main; main(sys.argv[1])"
OUTPUT_LIMIT = 20_000  # characters of a unit's printed output kept for the student (check in the notebook)
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "FPNLAB_UNITS_DEVICE")  # the rest stays behind


@dataclass(frozen=True)
class Setup:
    """How units' processes start: which package they import, how sealed off they are, what is shown."""

    package: Path  # the folder holding the fpnlab/ the units' processes import
    extra_paths: tuple[Path, ...] = ()  # more import paths after it (the grader's own code, for its jobs)
    isolated: bool = False  # grading: no environment variables, no user site-packages, one thread
    show_output: bool = True  # keep what the student's code prints (check); grading discards it
    time_limit_s: float = 120.0  # per request
    env: dict[str, str] = field(default_factory=dict)  # added to the process' environment
    not_graded: dict[str, str] = field(default_factory=dict)  # unit -> why its code was not taken (grading)
    order: tuple[str, ...] = ()  # the order units are graded in: the next one's process starts early (grading)
    release: Path | None = None  # the release's fpnlab: a unit whose code is still its stub needs no process


class UnitProcess:
    """One fresh Python process for one unit's cases (or one grading job)."""

    def __init__(self, unit: str, setup: Setup):
        self.unit, self.setup = unit, setup
        self._cleanup = ExitStack()
        self.folder = self._cleanup.enter_context(outputs.temporary_folder(f"fpnlab-{unit}-"))
        paths = "|".join(str(path) for path in (setup.package, *setup.extra_paths))
        flags = ["-E", "-s"] if setup.isolated else []
        self.process = subprocess.Popen(
            [sys.executable, *flags, "-c", BOOT, unit, paths],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if setup.show_output else subprocess.DEVNULL,
            cwd=self.folder,
            env=environment(setup),
        )
        self.answers: queue.Queue[Any] = queue.Queue()
        self.printed: list[str] = []
        threading.Thread(target=self._read_answers, args=(self.process.stdout,), daemon=True).start()
        if setup.show_output:
            threading.Thread(target=self._read_printed, args=(self.process.stderr,), daemon=True).start()

    def ask(self, request: dict[str, Any], time_limit_s: float | None = None) -> Any:
        """Send `request`, wait for its answer; AssertionError in words when none comes in time or at all."""
        limit = self.setup.time_limit_s if time_limit_s is None else time_limit_s
        try:
            write_frame(self.process.stdin, request)
        except OSError:
            self.close()
            raise AssertionError(self._ended()) from None
        try:
            answer = self.answers.get(timeout=limit)
        except queue.Empty:
            self.close()
            raise AssertionError(
                f"unit {self.unit!r} took longer than {limit:g} s on one test case: an endless loop?"
            ) from None
        if isinstance(answer, BaseException) or answer is None:
            self.close()
            why = f" ({answer})" if isinstance(answer, FrameError) else ""
            raise AssertionError(self._ended() + why)
        return answer

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """End the process (it has had its chance to finish) and remove its folder."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self._cleanup.close()

    def output(self) -> str:
        """What the student's code printed so far (empty when output is not kept)."""
        return "".join(self.printed)[:OUTPUT_LIMIT]

    def _ended(self) -> str:
        code = self.process.wait()
        return f"unit {self.unit!r}'s process ended without an answer (exit code {code})"

    def _read_answers(self, stream: IO[bytes]) -> None:
        """Every frame the process writes, in order; then None at its end, or the FrameError that stopped it."""
        try:
            while (answer := read_frame(stream)) is not None:
                self.answers.put(answer)
            self.answers.put(None)
        except (FrameError, OSError, ValueError) as err:
            self.answers.put(err if isinstance(err, FrameError) else FrameError(str(err)))

    def _read_printed(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            if sum(len(part) for part in self.printed) < OUTPUT_LIMIT:
                self.printed.append(line.decode("utf-8", "replace"))


def environment(setup: Setup) -> dict[str, str]:
    """The process' environment: all of ours for a student's check; a few plain variables when grading."""
    if not setup.isolated:
        return {**os.environ, **setup.env}
    kept = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {**kept, **threads, "HOME": tempfile.gettempdir(), **setup.env}
