"""
One progress style for every long loop: a rich bar on a terminal, plain lines in a log.

Progress goes to stderr. On a terminal it is a live rich bar; otherwise (a file, a pipe, CI, nohup) it
is one plain, never truncated line when the loop starts, then whenever `interval_s` seconds (default 30,
or $FACEFORGET_PROGRESS_SECONDS) or a tenth of the total have passed since the last line, whichever comes
first (tenths no faster than one a second), and one when it ends: description, step / total, percent,
elapsed, ETA and the note (loss terms).
A quiet thread repeats the line when a single step outlasts the interval, so a log never goes silent.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

INTERVAL_ENV = "FACEFORGET_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0
DEFAULT_FRACTION = 0.1
MIN_GAP_S = 1.0  # a fast loop does not print its tenths faster than this


class Bar:
    """A started progress task: `advance(n)` and `note(text)` (live losses, counts); no-op when disabled."""

    def advance(self, n: int = 1) -> None:
        """Move the bar forward by n units."""

    def note(self, text: str) -> None:
        """Show `text` after the bar."""


class _RichBar(Bar):
    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        self._progress.update(self._task, note=text)


def _duration(seconds: float) -> str:
    """Seconds as h:mm:ss (or m:ss under an hour)."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class LineBar(Bar):
    """
    Progress as plain lines on `stream`, at most `interval_s` seconds or `fraction` of `total` apart.

    `clock` is injectable (tests); `tick()` prints a line if the interval has passed without one.
    """

    def __init__(self, description: str, total: int, stream: TextIO, *, interval_s: float = DEFAULT_INTERVAL_S,
                 fraction: float = DEFAULT_FRACTION, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0 or not 0 < fraction <= 1:
            raise ValueError(f"need interval_s > 0 and 0 < fraction <= 1, got {interval_s}, {fraction}")
        self.description, self.total, self._stream, self._clock = description, max(0, total), stream, clock
        self._interval, self._step = interval_s, max(1, int(total * fraction))
        self._done, self._text, self._lock = 0, "", threading.Lock()
        self._start = self._last_time = clock()
        self._last_done = 0
        self._emit("started")

    def line(self, status: str = "") -> str:
        """The current progress line (without a newline)."""
        elapsed = self._clock() - self._start
        pct = f" ({100 * self._done / self.total:.0f}%)" if self.total else ""
        eta = "?"
        if self._done >= self.total and self.total:
            eta = "0:00"
        elif self._done:
            eta = _duration(elapsed / self._done * (self.total - self._done))
        parts = [f"{self.description}: {self._done}/{self.total}{pct}", f"elapsed {_duration(elapsed)}",
                 f"eta {eta}", *(p for p in (status, self._text) if p)]
        return " | ".join(parts)

    def _emit(self, status: str = "") -> None:
        self._stream.write(self.line(status) + "\n")
        self._stream.flush()
        self._last_time, self._last_done = self._clock(), self._done

    def advance(self, n: int = 1) -> None:
        """Count n more units; print when the interval, or a tenth of the total and 1 s, passed since the last line."""
        with self._lock:
            self._done += n
            if self.total and self._done >= self.total:
                return  # the closing line says it
            since = self._clock() - self._last_time
            if since >= self._interval or (self._done - self._last_done >= self._step and since >= MIN_GAP_S):
                self._emit()

    def note(self, text: str) -> None:
        """Set the note shown at the end of the following lines (e.g. the loss terms), in full."""
        with self._lock:
            self._text = text

    def tick(self) -> None:
        """Print the line again if `interval_s` passed without one (a step that takes long)."""
        with self._lock:
            if self._clock() - self._last_time >= self._interval:
                self._emit()

    def finish(self) -> None:
        """The closing line."""
        with self._lock:
            self._emit("done")


def interval_from_env(default: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between plain progress lines: $FACEFORGET_PROGRESS_SECONDS when set (positive), else `default`."""
    value = os.environ.get(INTERVAL_ENV)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{INTERVAL_ENV}={value!r} must be positive")
    return seconds


@contextmanager
def _ticking(bar: LineBar, period: float) -> Iterator[None]:
    """Call `bar.tick()` every `period` seconds from a daemon thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            bar.tick()

    thread = threading.Thread(target=loop, name="faceforget-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, *, stream: TextIO | None = None,
                 interval_s: float | None = None) -> Iterator[Bar]:
    """
    Context manager yielding a Bar: rich on a terminal, `LineBar` lines otherwise, a no-op when disabled.

    `stream` defaults to stderr; `interval_s` to $FACEFORGET_PROGRESS_SECONDS, else 30 s.
    """
    if not enabled:
        yield Bar()
        return
    stream = sys.stderr if stream is None else stream
    console = Console(file=stream)
    if console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            yield _RichBar(progress, progress.add_task(description, total=total, note=""))
        return
    interval = interval_from_env() if interval_s is None else interval_s
    bar = LineBar(description, total, stream, interval_s=interval)
    with _ticking(bar, min(1.0, interval)):
        yield bar
    bar.finish()
