"""Interleaved timing: every mode sees every part of the machine's load drift."""

from __future__ import annotations

import pytest

from ganforge.timing import Timing, interleaved, round_orders, stopwatch


def test_rounds_alternate_their_order():
    assert round_orders(["a", "b", "c"], 4) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"], ["c", "b", "a"]]


def test_interleaved_runs_in_that_order_and_summarises_each_mode():
    calls: list[str] = []
    clock = iter(range(100))

    def run(name: str):
        def once() -> float:
            calls.append(name)
            return float(next(clock))

        return once

    timings = interleaved({"a": run("a"), "b": run("b")}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert timings["a"].samples == (0.0, 3.0, 4.0) and timings["b"].samples == (1.0, 2.0, 5.0)
    assert (timings["a"].median, timings["a"].low, timings["a"].high) == (3.0, 0.0, 4.0)
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        interleaved({"a": run("a")}, 0)


def test_a_drift_that_would_favour_the_later_mode_cancels_out():
    # Load halves the speed linearly over the run: in sequence the first mode looks faster; here both are equal.
    elapsed = [0.0]

    def same_work() -> float:
        seconds = 1.0 + elapsed[0] / 10
        elapsed[0] += seconds
        return seconds

    timings = interleaved({"a": same_work, "b": same_work}, 6)
    assert sum(timings["a"].samples) == pytest.approx(sum(timings["b"].samples), rel=0.02)
    assert Timing((1.0, 3.0, 2.0)).median == 2.0


def test_stopwatch_syncs_around_the_work():
    events: list[str] = []
    seconds = stopwatch(lambda: events.append("work"), lambda: events.append("sync"))
    assert events == ["sync", "work", "sync"] and seconds >= 0
