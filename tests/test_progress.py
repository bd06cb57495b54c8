"""Plain progress lines for logs: when they appear (fake clock), what they hold, and the non-TTY switch."""
import io

import pytest

from faceforget.progress import LineBar, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


NOTE = "unif=-3.9123 hard=0.4410 centroid=0.0312 keep=0.0021 " + "x" * 120 + " total=-3.4380"


def test_lines_every_interval_or_tenth_whichever_first():
    clock, out = FakeClock(), io.StringIO()
    bar = LineBar("unlearning (dispersion)", 200, out, interval_s=30, clock=clock)
    printed_at = []  # step after which a line appeared
    for step in range(1, 201):
        clock.now += 4.0  # 4 s per step: 30 s pass after 8 steps, a tenth (20 steps) after 80 s
        before = out.getvalue().count("\n")
        bar.note(NOTE)
        bar.advance()
        if out.getvalue().count("\n") > before:
            printed_at.append(step)
    bar.finish()
    # 4 s steps: the interval comes first (every 8 steps, at 32 s); the start line is 0 s; the last
    # step's line is the closing one, printed once
    assert printed_at == list(range(8, 200, 8))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + len(printed_at) + 1
    assert lines[0] == "unlearning (dispersion): 0/200 (0%) | elapsed 0:00 | eta ? | started"
    assert lines[1] == f"unlearning (dispersion): 8/200 (4%) | elapsed 0:32 | eta 12:48 | {NOTE}"
    assert lines[-1] == f"unlearning (dispersion): 200/200 (100%) | elapsed 13:20 | eta 0:00 | done | {NOTE}"


def test_fast_steps_print_every_tenth():
    clock, out = FakeClock(), io.StringIO()
    bar = LineBar("embedding 1000 images", 1000, out, interval_s=30, clock=clock)
    for _ in range(1000):
        clock.now += 0.01
        bar.advance()
    bar.finish()
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines[1:]] == [
        f"embedding 1000 images: {k}/1000 ({k // 10}%)" for k in range(100, 1001, 100)]
    assert lines[-1].endswith("| done")


def test_tick_repeats_the_line_during_a_long_step():
    clock, out = FakeClock(), io.StringIO()
    bar = LineBar("caching forget views", 10, out, interval_s=30, clock=clock)
    clock.now += 29
    bar.tick()
    assert out.getvalue().count("\n") == 1  # only the start line
    clock.now += 1
    bar.tick()
    clock.now += 10
    bar.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1] == "caching forget views: 0/10 (0%) | elapsed 0:30 | eta ?"


def test_progress_bar_writes_plain_lines_to_a_non_terminal_stream():
    out = io.StringIO()
    with progress_bar("steps", 3, stream=out, interval_s=1000) as bar:
        for _ in range(3):
            bar.note("loss=" + "9" * 200)
            bar.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("steps: 0/3 (0%)") and lines[-1].startswith("steps: 3/3 (100%)")
    assert all(line.endswith("loss=" + "9" * 200) for line in lines[1:])  # never truncated
    assert "\x1b[" not in out.getvalue()  # no terminal control codes in a log


def test_disabled_bar_prints_nothing():
    out = io.StringIO()
    with progress_bar("steps", 3, enabled=False, stream=out) as bar:
        bar.advance()
        bar.note("x")
    assert out.getvalue() == ""


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("FACEFORGET_PROGRESS_SECONDS", "nope")
    with pytest.raises(ValueError, match="FACEFORGET_PROGRESS_SECONDS"):
        with progress_bar("steps", 3, stream=io.StringIO()):
            pass


def test_a_fast_loop_prints_its_tenths_at_most_once_a_second():
    clock, out = FakeClock(), io.StringIO()
    bar = LineBar("checking 282 images", 282, out, interval_s=30, clock=clock)
    for _ in range(282):
        clock.now += 0.001
        bar.advance()
    bar.finish()
    assert out.getvalue().count("\n") == 2  # the start and the end line only
