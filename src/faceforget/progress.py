"""One progress-bar style for every long loop (rich), silent when disabled or not on a terminal-like sink."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Bar:
    """A started progress task: `advance(n)` and `note(text)` (live losses, counts)."""

    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        """Move the bar forward by n units."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        """Show `text` after the bar."""
        if self._progress is not None:
            self._progress.update(self._task, note=text)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Bar]:
    """Context manager yielding a Bar; with enabled=False it yields a no-op Bar."""
    if not enabled:
        yield Bar(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, transient=False) as progress:
        yield Bar(progress, progress.add_task(description, total=total, note=""))
