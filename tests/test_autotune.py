"""precision = "auto": the fastest candidate by interleaved measurement, cached, never a slow emulation."""

from __future__ import annotations

import json

import pytest
import torch

from ganforge import autotune
from ganforge.autotune import FP32, Mode
from ganforge.errors import GanforgeError
from ganforge.training import Trainer

CPU = torch.device("cpu")


def fake_timers(seconds: dict[str, float], calls: list[str]):
    def timer_of(mode: Mode):
        def once() -> float:
            calls.append(mode.label)
            return seconds[mode.label]

        return once

    return timer_of


def test_the_fastest_candidate_wins_and_fp32_is_the_yardstick(monkeypatch):
    monkeypatch.setattr(autotune, "bf16_convolution_ratio", lambda device: 0.5)
    modes = autotune.candidates(CPU, None)
    assert modes[0] == FP32 and {m.label for m in modes} == {
        "fp32",
        "fp32+channels_last",
        "bf16",
        "bf16+channels_last",
    }
    assert autotune.candidates(CPU, True) == [Mode("fp32", True), Mode("bf16", True)]
    seconds = {"fp32": 1.0, "fp32+channels_last": 0.9, "bf16": 0.7, "bf16+channels_last": 0.5}
    calls: list[str] = []
    decision = autotune.choose(modes, fake_timers(seconds, calls), CPU, rounds=2)
    assert decision.mode == Mode("bf16", True) and decision.seconds == seconds
    assert calls == [m.label for m in modes] + [m.label for m in reversed(modes)]  # interleaved
    assert "bf16+channels_last, 0.50x the fp32 step" in decision.describe()
    slower = {label: 1.0 if label == "fp32" else 2.0 for label in seconds}
    assert autotune.choose(modes, fake_timers(slower, []), CPU).mode == FP32  # never slower than fp32
    noise = {**slower, "fp32+channels_last": 0.97}  # 3 % faster: within the noise
    decision = autotune.choose(modes, fake_timers(noise, []), CPU)
    assert decision.mode == FP32 and "fp32+channels_last is within 5% of fp32: fp32 kept" in decision.describe()


def test_emulated_bf16_is_not_timed_at_all(monkeypatch):
    monkeypatch.setattr(autotune, "bf16_convolution_ratio", lambda device: 77.0)  # AVX2's fallback path
    calls: list[str] = []
    decision = autotune.choose(autotune.candidates(CPU, False), fake_timers({"fp32": 1.0}, calls), CPU)
    assert decision.mode == FP32 and calls == [] and decision.seconds == {}
    assert (
        decision.describe()
        == "precision auto: fp32; bf16 not timed: its convolutions run 77x slower than fp32 here (emulated)"
    )


def test_the_convolution_probe_measures_a_ratio():
    assert 0 < autotune.bf16_convolution_ratio(CPU, repeats=1) < 1000


@pytest.mark.measures_precision
def test_decide_times_real_steps_leaves_the_networks_alone_and_caches(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    config, registry = tiny
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")  # measured here (first time)
    assert trainer.precision.mode in ("fp32", "bf16")
    record = json.loads((tmp_path / "cache" / "precision.json").read_text())
    ((key, entry),) = record.items()
    assert entry["mode"] == trainer.precision.mode + ("+channels_last" if trainer.precision.channels_last else "")
    assert set(entry["seconds"]) <= {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    assert f"{torch.get_num_threads()} threads" in key and key.endswith(f"| {config.train.batch_size}")

    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}  # weights and spectral-norm vectors
    rng = torch.get_rng_state()
    timed = []
    monkeypatch.setattr(autotune, "measure", lambda timers, rounds: timed.append(1) or {})
    again = autotune.decide(trainer.gan, trainer.loss, config.model, config.train.batch_size, CPU, None)
    assert again.cached and again.mode.label == entry["mode"] and timed == []  # from the cache
    assert "measured on an earlier run" in again.describe()
    monkeypatch.undo()
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(autotune.CHOICE_ENV, raising=False)
    fresh = autotune.decide(trainer.gan, trainer.loss, config.model, 4, CPU, False)  # another batch: measured
    assert not fresh.cached and len(json.loads((tmp_path / "cache" / "precision.json").read_text())) == 2
    assert all(torch.equal(v, trainer.D.state_dict()[k]) for k, v in before.items())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_damaged_cache_entry_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    (tmp_path / "precision.json").write_text(json.dumps({"a": {"mode": "fp64"}, "b": "bf16", "c": {}}))
    assert [autotune.cached(key) for key in "abcd"] == [None] * 4
    (tmp_path / "precision.json").write_text('{"a": {"mode": "bf16+channels_last"}}')
    assert autotune.cached("a") == Mode("bf16", True)
    (tmp_path / "precision.json").write_text("[1, 2")
    assert autotune.cached("a") is None


def test_the_environment_can_fix_the_choice(tiny, tmp_path, monkeypatch):
    config, registry = tiny
    monkeypatch.setenv(autotune.CHOICE_ENV, "bf16+channels_last")
    trainer = Trainer(config, registry, tmp_path / "a", device="cpu")
    assert (trainer.precision.mode, trainer.precision.channels_last) == ("bf16", True)
    config.train.precision = "fp32"  # an explicit precision is not auto's to change
    assert Trainer(config, registry, tmp_path / "b", device="cpu").precision.mode == "fp32"
    config.train.precision = "auto"
    monkeypatch.setenv(autotune.CHOICE_ENV, "fp64")
    with pytest.raises(GanforgeError, match=r"\$GANFORGE_PRECISION_AUTO: 'fp64' is not a precision mode"):
        Trainer(config, registry, tmp_path / "c", device="cpu")
