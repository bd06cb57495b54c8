"""The one timings model: laps on a fake clock, every moment booked once, the total is their sum."""
import pytest

from faceforget.timings import STAGES, Stopwatch, stage_rows, unlearn_seconds


class FakeClock:
    def __init__(self, ticks):
        self.ticks = iter(ticks)

    def __call__(self):
        return next(self.ticks)


def test_laps_book_the_time_since_the_previous_lap():
    watch = Stopwatch(FakeClock([10.0, 12.5, 13.0, 20.0, 20.25]))  # start, then one tick per lap
    assert watch.lap("embed_original") == 2.5
    assert watch.lap("cache_views") == 0.5
    assert watch.lap("train") == 7.0
    assert watch.lap("cache_views") == 0.25  # a stage booked twice adds up
    assert watch.timings() == {"embed_original_s": 2.5, "cache_views_s": 0.75, "train_s": 7.0, "total_s": 10.25}


def test_total_is_the_wall_clock_from_start_to_last_lap():
    ticks = [0.0, 0.1, 0.30000000000000004, 1.7, 4.2]
    watch = Stopwatch(FakeClock(ticks))
    for stage in ("a", "b", "c", "d"):
        watch.lap(stage)
    t = watch.timings()
    assert t["total_s"] == pytest.approx(ticks[-1] - ticks[0])
    assert t["total_s"] == pytest.approx(sum(v for k, v in t.items() if k != "total_s"))


def test_unlearn_seconds_sums_the_unlearning_stages():
    t = {"embed_original_s": 100.0, "cache_views_s": 170.0, "method_setup_s": 2.0, "train_s": 650.0,
         "finalize_s": 3.0, "evaluate_unlearned_s": 20.0, "total_s": 945.0}
    assert unlearn_seconds(t) == 825.0
    assert unlearn_seconds({"unlearn_wall_s": 825.0, "total_s": 656.0}) == 825.0  # run folders before the stages


def test_stage_rows_are_in_run_order_with_the_total_last():
    t = {"train_s": 7.0, "audits_s": 2.0, "embed_original_s": 1.0, "new_stage_s": 0.5, "total_s": 10.5}
    rows = stage_rows(t)  # metrics.json sorts keys; the report shows the run's order
    assert [r[0] for r in rows] == ["embed_original", "train", "audits", "new_stage", "total"]
    assert rows[1] == ("train", STAGES["train"], 7.0) and rows[3] == ("new_stage", "", 0.5)
    assert rows[-1][2] == 10.5
