"""Runs that survive: kills inside checkpoint writing, signals, divergence, untrusted weights files,
run directories and one-line errors. Each test is a row of docs/reliability.md."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_tiny
from PIL import Image
from pool_features import TEST_EXTRACTOR

from ganforge.checkpoint import load_tensors, read_header, save_tensors
from ganforge.cli import main
from ganforge.config import dump_toml, load_config
from ganforge.divergence import DivergenceCheck
from ganforge.errors import CheckpointError, GanforgeError, Interrupted, TrainingStopped
from ganforge.interrupts import GracefulStop
from ganforge.plugins import load_registry
from ganforge.rundir import CHECKPOINTS, GENERATOR_EMA, LOCK, METRICS, RunDir
from ganforge.sampling import load_generator
from ganforge.training import Trainer

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.output.strip().endswith(errors[0]), result.output  # progress may come first
    assert "Traceback" not in result.output
    return errors[0]


def ganforge_process(*args, kill: tuple[int, str] | None = None, cwd: Path, **popen):
    """``ganforge ARGS`` in a child process (optionally SIGKILLed at a write, see tests/killer.py)."""
    head = [sys.executable, str(TESTS / "killer.py"), str(kill[0]), kill[1]] if kill else [sys.executable, "-m"]
    command = head + ([] if kill else ["ganforge"]) + [str(a) for a in args]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "COLUMNS": "200"}
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def final_tensors(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_tensors(run / CHECKPOINTS / f"step_{step:07d}.safetensors")[0]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- checkpoints as units


@pytest.mark.slow
def test_sigkill_inside_checkpoint_writing_then_resume_is_bit_identical(tmp_path):
    """Killed before a rename, after one, and with a checkpoint half-written: every resume continues exactly."""
    config = write_tiny(tmp_path)
    args = ("build", config, "--steps", 6, "--set", "train.checkpoint_every=1", "--no-eval")
    reference = ganforge_process(*args, "--out", "straight", cwd=tmp_path)
    assert reference.wait() == 0, reference.stderr.read()

    # The first process writes config.toml and samples/real.png before its first checkpoint.
    kills = [(3, "torn"), (7, "before"), (9, "after"), (12, "torn"), (6, "before")]
    first = True
    for point in [*kills, None]:
        where = ("--out", "run") if first else ("--resume", "run")
        child = ganforge_process(*args, *where, kill=point, cwd=tmp_path)
        code, err = child.wait(), child.stderr.read()
        if point is None:
            assert code == 0, err
        else:
            assert code == -signal.SIGKILL, (point, err)
        if not first and point == (7, "before"):  # the torn first checkpoint's temporary was cleaned up
            assert "removed 1 temporary file" in err, err
        first = False
    assert not list((tmp_path / "run").rglob("*.tmp"))
    assert_same_tensors(final_tensors(tmp_path / "run", 6), final_tensors(tmp_path / "straight", 6))
    for name in ("generator.safetensors", GENERATOR_EMA, "discriminator.safetensors"):
        assert_same_tensors(load_tensors(tmp_path / "run" / name)[0], load_tensors(tmp_path / "straight" / name)[0])
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / METRICS).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tiny, tmp_path):
    config, registry = tiny
    straight = Trainer(config, registry, tmp_path / "straight", device="cpu")
    straight.fit(4)
    Trainer(config, registry, tmp_path / "run", device="cpu").fit(4)  # checkpoints at 2 and 4
    newest = tmp_path / "run" / CHECKPOINTS / "step_0000004.safetensors"
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the tensor data
    newest.write_bytes(bytes(data))
    warnings = []
    again = Trainer(config, registry, tmp_path / "run", device="cpu")
    again.warn = warnings.append
    again.resume(tmp_path / "run")
    assert again.step == 2
    assert any("checksum mismatch" in w and "step_0000004" in w for w in warnings)
    assert newest.with_suffix(".bad").is_file() and not newest.exists()
    again.fit(4)
    for a, b in ((straight.G, again.G), (straight.D, again.D), (straight.G_ema, again.G_ema)):
        assert_same_tensors(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("damage", ["no metadata", "wrong step", "truncated"])
def test_checkpoints_that_do_not_verify_are_skipped(tiny, tmp_path, damage):
    config, registry = tiny
    Trainer(config, registry, tmp_path, device="cpu").fit(4)
    newest = tmp_path / CHECKPOINTS / "step_0000004.safetensors"
    if damage == "no metadata":
        save_tensors(newest, load_tensors(newest)[0], {})
    elif damage == "wrong step":  # a consistent file under the wrong name
        tensors, meta = load_tensors(newest)
        state = {**json.loads(meta["ganforge.train_state"]), "step": 3}
        kept = {k: v for k, v in meta.items() if k not in ("format", "ganforge.checksum")}
        save_tensors(newest, tensors, {**kept, "ganforge.train_state": state})
    else:
        newest.write_bytes(newest.read_bytes()[:1000])
    warnings = []
    again = Trainer(config, registry, tmp_path, device="cpu")
    again.warn = warnings.append
    again.resume(tmp_path)
    assert again.step == 2 and len(warnings) == 1 and "step_0000004" in warnings[0]


def test_only_the_newest_checkpoints_are_kept(tiny, tmp_path):
    config, registry = tiny
    config.train.checkpoint_every, config.train.keep_checkpoints = 1, 3
    Trainer(config, registry, tmp_path, device="cpu").fit(5)
    assert RunDir(tmp_path).checkpoint_steps() == [5, 4, 3]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(tiny, tmp_path):
    config, registry = tiny
    run = RunDir(tmp_path / "run")
    run.prepare(resume=False, overwrite=False, warn=print)
    (run.path / "config.toml").write_text(dump_toml(config))
    run.checkpoints.mkdir()
    (run.checkpoints / ".step_0000002.safetensors.abc.tmp").write_bytes(b"half")
    warnings = []
    run.prepare(resume=True, overwrite=False, warn=warnings.append)
    assert warnings == [f"removed 1 temporary file(s) an interrupted run left in {run.path}"]
    assert list(run.checkpoints.iterdir()) == []
    trainer = Trainer(config, registry, run.path, device="cpu")
    trainer.warn = warnings.append
    trainer.resume(run.path)
    assert trainer.step == 0 and "no complete checkpoint yet" in warnings[-1]


def files_of_the_run(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but the lock's (which holds the PID of whoever opened the folder last)."""
    return {name: data for name, data in snapshot(folder).items() if name != LOCK}


@pytest.mark.parametrize("damage", ["both checkpoints damaged", "checkpoints deleted"])
def test_resume_refuses_when_no_checkpoint_verifies_and_changes_nothing(tmp_path, damage):
    config = write_tiny(tmp_path)
    run = tmp_path / "run"
    assert cli("build", config, "--out", run, "--steps", 4, "--no-eval").exit_code == 0
    if damage == "checkpoints deleted":
        for path in (run / CHECKPOINTS).iterdir():
            path.unlink()
    else:
        for path in (run / CHECKPOINTS).iterdir():
            data = bytearray(path.read_bytes())
            data[-5] ^= 0xFF
            path.write_bytes(bytes(data))
    before = files_of_the_run(run)
    line = one_line_error(cli("build", config, "--resume", run, "--steps", 6, "--no-eval"), 2)
    expected = "no checkpoint verifies" if damage == "both checkpoints damaged" else "were checkpoints deleted?"
    assert expected in line and f"--out {run} --overwrite" in line and "nothing was changed" in line
    if damage == "both checkpoints damaged":
        assert "step_0000004.safetensors: checksum mismatch" in line and "step_0000002.safetensors" in line
    assert files_of_the_run(run) == before
    assert cli("build", config, "--out", run, "--steps", 2, "--no-eval", "--overwrite").exit_code == 0


def test_a_second_process_on_a_run_directory_is_refused_with_the_holders_pid(tmp_path):
    config = write_tiny(tmp_path)
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from ganforge.rundir import RunLock; RunLock({str(run)!r}).acquire(); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_line_error(cli("build", config, "--out", run, "--steps", 2), 2)
        assert f"PID {holder.pid} is already running there" in line and str(run) in line
        assert sorted(p.name for p in run.iterdir()) == [LOCK]  # nothing built, nothing written
    finally:
        holder.kill()
        holder.wait()
    assert cli("build", config, "--out", run, "--steps", 2, "--no-eval").exit_code == 0  # the kernel dropped it


def test_a_start_that_fails_on_bad_data_leaves_nothing_that_blocks_the_retry(tmp_path):
    config = write_tiny(tmp_path)
    run, empty = tmp_path / "run", tmp_path / "no-images"
    empty.mkdir()
    bad = cli(
        "build", config, "--out", run, "--steps", 2, "--set", "data.name=image_folder", "--set", f"data.root={empty}"
    )
    assert "no images" in one_line_error(bad, 2)
    assert not RunDir(run).is_run()
    assert cli("build", config, "--out", run, "--steps", 2, "--no-eval").exit_code == 0


# --------------------------------------------------------------------------- signals


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_step_writes_a_checkpoint_and_prints_how_to_resume(tmp_path, signum):
    config = write_tiny(tmp_path)
    options = ("--steps", 1000, "--set", "train.checkpoint_every=500", "--no-eval", "--device", "cpu")
    child = ganforge_process("build", config, "--out", "run", *options, cwd=tmp_path)
    metrics = tmp_path / "run" / METRICS
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    child.send_signal(signum)
    code, err = child.wait(timeout=120), child.stderr.read()
    assert code == 128 + signum
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and "; resume with: ganforge build " in last, err
    step = int(last.split()[3].rstrip(";"))
    assert "--resume run --set=train.checkpoint_every=500 --steps=1000 --no-eval --device=cpu" in last
    assert RunDir(tmp_path / "run").checkpoint_steps() == [step]
    header = read_header(tmp_path / "run" / GENERATOR_EMA)
    assert header.metadata["ganforge.step"] == str(step)
    resumed = ganforge_process(
        "build", config, "--resume", "run", "--steps", step + 1, "--set", "train.checkpoint_every=500", cwd=tmp_path
    )
    assert resumed.wait() == 0
    assert f"step {step} → {step + 1}" in resumed.stderr.read()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_a_signal_while_the_command_starts_is_one_line(tmp_path, signum, delay):
    """Loading torch & co. takes seconds: a signal then is no traceback (SIGINT) and no silent end (SIGTERM)."""
    process = ganforge_process("build", write_tiny(tmp_path), "--out", tmp_path / "run", cwd=tmp_path)
    time.sleep(delay)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr


def test_graceful_stop_defers_the_first_signal_and_aborts_on_the_second():
    previous = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.signum == signal.SIGTERM  # noted, nothing raised: the step goes on
        with pytest.raises(Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        assert caught.value.exit_code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is previous
    with GracefulStop() as stop, pytest.raises(Interrupted):
        with stop.immediately():  # after the final checkpoint, the first signal stops at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)


def test_a_signal_is_not_swallowed_by_code_that_catches_every_error():
    """Handlers raise where the signal lands: inside a library's ``except Exception`` it must get through."""
    swallowed = []
    with GracefulStop() as stop, pytest.raises(Interrupted):
        with stop.immediately():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)
            except Exception as exc:  # what an optional import or an image decoder does
                swallowed.append(exc)
    assert swallowed == []


def test_final_checkpoint_is_written_before_the_final_evaluation(tiny, tmp_path, monkeypatch):
    config, registry = tiny
    metrics = f'\n[eval]\nmetrics = [{{ name = "fid", extractor = "{TEST_EXTRACTOR}", layer = "48" }}]\n'
    config.eval.metrics = load_config(write_tiny(tmp_path, extra=metrics), load_registry)[0].eval.metrics

    def killed_evaluation(self):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(Trainer, "evaluate", killed_evaluation)
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    with pytest.raises(Interrupted) as caught:
        trainer.fit(3)
    assert caught.value.step == caught.value.checkpoint_step == 3
    assert RunDir(tmp_path / "run").checkpoint_steps()[0] == 3
    Trainer(config, registry, tmp_path / "noeval", device="cpu").fit(3, evaluate=False)  # --no-eval: never called


def test_inception_weights_an_offline_machine_lacks_fail_before_the_first_step(
    tmp_path, monkeypatch, inception_download_fails
):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))  # no weights from `ganforge inception-weights`
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    metrics = '\n[eval]\nmetrics = ["ms_ssim", { name = "density_coverage", space = "pixels" }, "fid"]\n'
    config, registry = load_config(write_tiny(tmp_path, extra=metrics), load_registry)
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    with pytest.raises(GanforgeError, match="^the standard FID Inception weights are not available"):
        trainer.fit(3)
    assert trainer.step == 0 and not (tmp_path / "run" / "config.toml").exists()  # nothing trained, no run
    config.eval.metrics = config.eval.metrics[:2]  # the metrics that need no extractor pass the check
    Trainer(config, registry, tmp_path / "run", device="cpu").fit(1)


# --------------------------------------------------------------------------- divergence


def test_a_nan_loss_stops_training_and_leaves_the_last_checkpoint_byte_identical(tiny, tmp_path):
    config, registry = tiny
    Trainer(config, registry, tmp_path, device="cpu").fit(2)
    before = snapshot(tmp_path)
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    trainer.resume(tmp_path)
    loss_d = trainer.loss.discriminator
    trainer.loss.discriminator = lambda *a: loss_d(*a) * float("nan")
    with pytest.raises(
        TrainingStopped, match=r"^step 3: loss_d .* not finite.*the last checkpoint \(step 2\) is untouched"
    ):
        trainer.fit(6)
    assert snapshot(tmp_path) == before


def test_divergence_through_the_cli_exits_1_with_one_line(tmp_path):
    line = one_line_error(
        cli("build", write_tiny(tmp_path), "--out", tmp_path / "run", "--steps", 3, "--set", "optim.lr=1e20"), 1
    )
    assert "step 1:" in line and "not finite" in line and "nothing was saved" in line
    assert RunDir(tmp_path / "run").checkpoint_steps() == []


def test_a_blow_up_that_stays_finite_stops_training_before_a_checkpoint_keeps_it(tiny, tmp_path):
    """lr = 1e6 after two good steps: the losses jump by 10⁹ but stay finite; the kept checkpoint is the good one."""
    config, registry = tiny
    config.train.checkpoint_every = 1
    Trainer(config, registry, tmp_path, device="cpu").fit(2)
    before = snapshot(tmp_path)
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    trainer.resume(tmp_path)
    for group in (*trainer.opt_g.param_groups, *trainer.opt_d.param_groups):
        group["lr"] = 1e6
    with pytest.raises(
        TrainingStopped,
        match=r"^step 3: the weights about to be checkpointed: loss_[dg] jumped to .*"
        r"over 10,000× its running level.*the last checkpoint \(step 2\) is untouched",
    ):
        trainer.fit(6)
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())  # finite, and blown up all the same
    after = snapshot(tmp_path)
    assert after.pop(METRICS).startswith(before.pop(METRICS))  # step 3's (sound) figures were logged
    assert after == before
    result = cli("sample", "--weights", tmp_path / GENERATOR_EMA, "-n", 8, "--out", tmp_path / "png")
    assert result.exit_code == 0 and "constant" not in result.output
    images = torch.stack([torch.from_numpy(np.array(Image.open(p))) for p in sorted((tmp_path / "png").iterdir())])
    assert images.float().std(dim=(1, 2)).min() > 1  # every sample has structure


def test_blow_ups_are_caught_by_the_running_level_and_saturation_but_ordinary_noise_is_not():
    check = DivergenceCheck(torch.device("cpu"))
    one = torch.tensor(1.0)
    images = torch.linspace(-1.5, 1.5, 64)
    for step, scale in enumerate([1, 3, 0.3, 8, 0.5, 2], 1):  # ordinary step-to-step variation
        check.record(step, 2 * one, one * scale, one * scale * 10, one, images)
    check.check(None)
    check.record(7, 2 * one, one, one * 5e5, one, images)  # 50,000× the running level of about 10
    with pytest.raises(TrainingStopped, match=r"^step 7: the discriminator's gradient norm jumped to 5e\+05"):
        check.check(6)
    saturated = DivergenceCheck(torch.device("cpu"))
    saturated.record(1, one, one, one, one, torch.full((4, 1, 8, 8), -30.0))
    with pytest.raises(TrainingStopped, match=r"^step 1: the generator's images are saturated \(100.0 % of pixels"):
        saturated.check(None)


def test_sample_warns_when_a_batch_comes_out_constant(weights, tmp_path):
    tensors, meta = load_tensors(weights)
    head = next(k for k in sorted(tensors) if k.startswith("head.") and k.endswith("bias"))
    dead = {k: torch.zeros_like(v) if not k.endswith(("_u", "_v")) else v for k, v in tensors.items()}
    dead[head] = torch.full_like(tensors[head], -50.0)  # every pixel far below black
    kept = {k: v for k, v in meta.items() if k not in ("format", "ganforge.checksum")}
    save_tensors(tmp_path / "dead.safetensors", dead, kept)
    result = cli("sample", "--weights", tmp_path / "dead.safetensors", "-n", 4, "--out", tmp_path / "png")
    assert result.exit_code == 0 and "a whole batch of 4 images came out constant" in " ".join(result.output.split())


def test_skip_mode_skips_the_bad_update_and_goes_on(tiny, tmp_path):
    config, registry = tiny
    config.train.on_nonfinite = "skip"
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    trainer.fit(2)
    d_before = {k: v.detach().clone() for k, v in trainer.D.named_parameters()}
    g_before = {k: v.detach().clone() for k, v in trainer.G.named_parameters()}
    loss_d = trainer.loss.discriminator
    trainer.loss.discriminator = lambda *a: loss_d(*a) * (float("nan") if trainer.step == 2 else 1.0)
    trainer.fit(3)
    # D's update of step 3 was skipped (its spectral-norm vectors still moved in the forward pass); G's was not
    assert_same_tensors({k: v.detach() for k, v in trainer.D.named_parameters()}, d_before)
    assert any(not torch.equal(v, g_before[k]) for k, v in trainer.G.named_parameters())
    trainer.fit(4)
    assert all(torch.isfinite(v).all() for v in trainer.D.state_dict().values())
    last = json.loads((tmp_path / METRICS).read_text().splitlines()[-1])
    assert last["step"] == 4 and last["skipped_steps"] == 1


# --------------------------------------------------------------------------- untrusted weights files


@pytest.fixture
def weights(tiny, tmp_path):
    config, registry = tiny
    Trainer(config, registry, tmp_path / "run", device="cpu").fit(1)
    return tmp_path / "run" / GENERATOR_EMA


def craft(source: Path, target: Path, edit) -> Path:
    """A copy of ``source`` whose metadata config was changed by ``edit``, with a valid checksum."""
    tensors, meta = load_tensors(source)
    config = json.loads(meta["ganforge.config"])
    edit(config, meta)
    meta["ganforge.config"] = json.dumps(config)
    save_tensors(target, tensors, {k: v for k, v in meta.items() if k not in ("format", "ganforge.checksum")})
    return target


def test_a_weights_file_never_imports_the_modules_it_names(weights, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "marker_plugin.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    crafted = craft(weights, tmp_path / "crafted.safetensors", lambda c, m: c.update(plugins=["marker_plugin"]))
    result = cli("sample", "--weights", crafted, "-n", 2, "--out", tmp_path / "png")
    assert result.exit_code == 0, result.output
    assert not marker.exists() and "marker_plugin" not in sys.modules
    assert len(list((tmp_path / "png").glob("*.png"))) == 2


def test_a_file_needing_a_plugin_that_is_not_installed_names_it(weights, tmp_path):
    def needs_plugin(config, meta):
        config["model"]["generator"]["attention"] = {"name": "fancy_attention"}
        meta["ganforge.plugins"] = json.dumps({**json.loads(meta["ganforge.plugins"]), "fancy": "2.1.0"})

    crafted = craft(weights, tmp_path / "needs.safetensors", needs_plugin)
    line = one_line_error(cli("sample", "--weights", crafted, "-n", 1, "--out", tmp_path / "png"), 2)
    assert "unknown attention 'fancy_attention'" in line and "fancy 2.1.0" in line and "--plugin" in line
    assert not (tmp_path / "png").exists()


def test_a_header_asking_for_a_huge_model_is_refused_before_allocation(weights, tmp_path, monkeypatch):
    import ganforge.sampling

    def huge(config, meta):
        config["model"]["generator"]["channels"] = {"4": 2**20, "8": 2**20, "16": 2**20}

    crafted = craft(weights, tmp_path / "huge.safetensors", huge)
    devices = []
    build = ganforge.sampling.build_generator

    def recording_build(*args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the default device the model is built on
        return build(*args, **kwargs)

    monkeypatch.setattr(ganforge.sampling, "build_generator", recording_build)
    with pytest.raises(CheckpointError, match="does not match its tensors: .*model \\[1048576"):
        load_generator(crafted, load_registry())
    assert devices == ["meta"]  # the real build (a 4-PB allocation) never happened


def test_a_modified_file_fails_its_checksum(weights, tmp_path):
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_generator(tmp_path / "flipped.safetensors", load_registry())


# --------------------------------------------------------------------------- run directories


def test_out_naming_an_existing_run_needs_resume_or_overwrite(tmp_path):
    config = write_tiny(tmp_path)
    assert cli("build", config, "--out", tmp_path / "run", "--steps", 2).exit_code == 0
    before = snapshot(tmp_path / "run")
    line = one_line_error(cli("build", config, "--out", tmp_path / "run", "--steps", 2), 2)
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert snapshot(tmp_path / "run") == before
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert cli("build", config, "--out", tmp_path / "run", "--steps", 1, "--overwrite").exit_code == 0
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / METRICS).read_text().splitlines()]
    assert steps == [1] and (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert one_line_error(cli("build", config, "--resume", tmp_path / "nowhere"), 2).endswith("or checkpoints/)")


def test_a_torn_last_metrics_line_is_dropped_on_resume(tiny, tmp_path):
    config, registry = tiny
    Trainer(config, registry, tmp_path, device="cpu").fit(2)
    with (tmp_path / METRICS).open("a") as handle:
        handle.write('{"step": 3, "loss_d": 1.2')  # the disk filled up mid-append
    warnings = []
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    trainer.warn = warnings.append
    trainer.resume(tmp_path)
    assert any("dropped 1 unreadable line(s) (3)" in w for w in warnings)
    trainer.fit(4)
    steps = [json.loads(x)["step"] for x in (tmp_path / METRICS).read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_output_files_get_the_permissions_of_the_umask(tiny, tmp_path):
    config, registry = tiny
    Trainer(config, registry, tmp_path, device="cpu").fit(2)
    mask = os.umask(0)
    os.umask(mask)
    for path in (
        tmp_path / GENERATOR_EMA,
        tmp_path / CHECKPOINTS / "step_0000002.safetensors",
        tmp_path / "config.toml",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


# --------------------------------------------------------------------------- one line, always


BROKEN_PLUGINS = {
    "raises_runtime": "raise RuntimeError('no GPU found at import')\n",
    "bad_syntax": "def broken(:\n",
    "exits": "import sys\nsys.exit(3)\n",
}


@pytest.mark.parametrize(
    "module, shown",
    [("raises_runtime", "RuntimeError: no GPU"), ("bad_syntax", "SyntaxError"), ("exits", "it called sys.exit(3)")],
)
def test_a_plugin_module_that_fails_to_import_is_one_line(tmp_path, monkeypatch, module, shown):
    (tmp_path / f"{module}.py").write_text(BROKEN_PLUGINS[module])
    monkeypatch.syspath_prepend(str(tmp_path))
    line = one_line_error(cli("build", write_tiny(tmp_path), "--dry-run", "--set", f'plugins=["{module}"]'), 2)
    assert f"plugin module '{module}' cannot be imported: {shown}" in line


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.betas=[1.5, 0.99]", "optim.betas.0: Input should be less than 1"),
        ("optim.lr=inf", "optim.lr: must be a finite number"),
        ("loss.name=nan", None),  # a string, not a number: the unknown-loss error
        ("model.latent_dim=nan", "model.latent_dim: must be a finite number"),
    ],
)
def test_bad_numbers_in_a_config_are_one_line(tmp_path, override, key):
    line = one_line_error(cli("build", write_tiny(tmp_path), "--dry-run", "--set", override), 2)
    assert key is None or key in line


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "Röntgen"\n'.encode("latin-1"))
    assert "not UTF-8 text" in one_line_error(cli("build", path, "--dry-run"), 2)


@pytest.mark.parametrize(
    "content, message",
    [
        ("Image Index,Finding Labels\nphantom_000000.png\n", "line 2 has fewer columns than the header"),
        ("Image Index,Finding Labels\nphantom_000000.png,Ödem\n".encode("latin-1"), "not UTF-8 text"),
    ],
)
def test_a_broken_labels_csv_is_one_line(tmp_path, content, message):
    from ganforge_plugins.image_folder import image_folder

    from ganforge.images import save_png

    save_png(torch.zeros(1, 8, 8, dtype=torch.uint8), tmp_path / "phantom_000000.png")
    (tmp_path / "labels.csv").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(GanforgeError, match=message):
        image_folder(root=str(tmp_path), labels_csv="labels.csv", resolution=8, image_channels=1)


def test_output_errors_are_one_line_exit_1(weights, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    line = one_line_error(cli("sample", "--weights", weights, "-n", 1, "--out", tmp_path / "a_file" / "png"), 1)
    assert "a_file" in line

    import ganforge.export

    def disk_full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(ganforge.export, "atomic_write", disk_full)
    line = one_line_error(cli("sample", "--weights", weights, "-n", 1, "--out", tmp_path / "png"), 1)
    assert line.endswith("sample_00000.png: No space left on device")


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    """safetensors reports ENOSPC as its own SafetensorError (no OSError); it reads as the OSError it is."""
    from safetensors import SafetensorError

    import ganforge.checkpoint

    real = ganforge.checkpoint.save_file

    def full_disk(tensors, path, metadata):
        if "checkpoints" in str(path):
            Path(path).write_bytes(b"half a checkpoint")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ganforge.checkpoint, "save_file", full_disk)
    run = tmp_path / "run"
    line = one_line_error(cli("build", write_tiny(tmp_path), "--out", run, "--steps", 2, "--no-eval"), 1)
    assert line.endswith("step_0000002.safetensors: No space left on device")
    assert list((run / CHECKPOINTS).iterdir()) == []  # the torn temporary file was removed


def test_nproc_with_a_batch_that_does_not_split_is_refused_before_torchrun(tmp_path, monkeypatch):
    import subprocess as launched

    monkeypatch.setattr(launched, "Popen", lambda *a, **k: pytest.fail("torchrun was started"))
    line = one_line_error(cli("build", write_tiny(tmp_path), "--out", tmp_path / "run", "--nproc", 3), 2)
    assert line == (
        "error: --nproc 3: train.batch_size (8) cannot be split over 3 processes; use a batch size divisible by 3"
    )
    assert not (tmp_path / "run").exists()


def deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_in_weights_metadata_is_one_line(weights, tmp_path):
    tensors, meta = load_tensors(weights)
    kept = {k: v for k, v in meta.items() if k not in ("format", "ganforge.checksum")}
    crafted = tmp_path / "deep.safetensors"
    save_tensors(crafted, tensors, {**kept, "ganforge.config": deep_json()})
    line = one_line_error(cli("sample", "--weights", crafted, "-n", 1, "--out", tmp_path / "png"), 2)
    assert "metadata 'ganforge.config' is not valid JSON (JSON nested too deeply)" in line
    parseable = json.loads(kept["ganforge.config"])  # deep, but within what the parser takes
    parseable["model"]["generator"]["attention"] = {"name": "self_attention", "x": json.loads(deep_json(500))}
    save_tensors(crafted, tensors, {**kept, "ganforge.config": json.dumps(parseable)})
    one_line_error(cli("sample", "--weights", crafted, "-n", 1, "--out", tmp_path / "png"), 2)


def test_deeply_nested_json_in_a_checkpoints_train_state_falls_back_to_the_previous_one(tmp_path):
    config = write_tiny(tmp_path)
    run = tmp_path / "run"
    assert cli("build", config, "--out", run, "--steps", 4, "--no-eval").exit_code == 0
    newest = run / CHECKPOINTS / "step_0000004.safetensors"
    tensors, meta = load_tensors(newest)
    kept = {k: v for k, v in meta.items() if k not in ("format", "ganforge.checksum")}
    save_tensors(newest, tensors, {**kept, "ganforge.train_state": deep_json()})
    result = cli("build", config, "--resume", run, "--steps", 4, "--no-eval")
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "ganforge.train_state' is not valid JSON" in result.output and "step_0000004.bad" in result.output
    for path in (run / CHECKPOINTS).glob("step_*.safetensors"):
        save_tensors(path, tensors, {**kept, "ganforge.train_state": deep_json()})
    line = one_line_error(cli("build", config, "--resume", run, "--steps", 4, "--no-eval"), 2)
    assert "no checkpoint verifies" in line


def test_asking_for_more_samples_than_the_disk_holds_is_refused_up_front(weights, tmp_path):
    line = one_line_error(cli("sample", "--weights", weights, "-n", 10**12, "--out", tmp_path / "png"), 2)
    assert line.startswith("error: -n 1000000000000: about ") and "would not fit" in line
    assert list((tmp_path / "png").glob("*.png")) == []


def test_two_plugins_with_one_entry_point_name_are_named(monkeypatch):
    real = metadata.entry_points(group="ganforge")
    clash = metadata.EntryPoint(name="attention", value="ganforge_cbam.attention", group="ganforge")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*real, clash] if group == "ganforge" else [])
    with pytest.raises(
        GanforgeError,
        match="two installed plugins use the entry-point name 'attention': "
        "ganforge_plugins.attention .*and ganforge_cbam.attention",
    ):
        load_registry()


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from ganforge.errors import ConfigError

    result = CliRunner().invoke(main, ["--debug", "build", str(tmp_path / "missing.toml")])
    assert isinstance(result.exception, ConfigError)
    monkeypatch.setenv("GANFORGE_DEBUG", "1")
    result = CliRunner().invoke(main, ["build", str(tmp_path / "missing.toml")])
    assert isinstance(result.exception, ConfigError)
    assert isinstance(result.exception.__cause__, FileNotFoundError)  # the cause stays in the traceback
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    result = CliRunner().invoke(main, ["build", str(tmp_path / "latin1.toml")])
    assert isinstance(result.exception, ConfigError) and isinstance(result.exception.__cause__, UnicodeDecodeError)


# --------------------------------------------------------------------------- memory before allocation


def crafted_big_generator(tiny, tmp_path: Path, resolution: int = 128) -> Path:
    """A small, self-consistent weights file whose self-attention at ``resolution``² needs N² per image."""
    from ganforge.checkpoint import save_module
    from ganforge.sampling import build_generator
    from ganforge.training import model_metadata

    config, registry = tiny
    config = config.model_copy(deep=True)
    side = {r: 4 for r in (4, 8, 16, 32, 64, 128, 256) if r <= resolution}
    config.model.resolution = resolution
    config.model.generator.channels = side
    config.model.discriminator.channels = side
    config.model.generator.attention_resolutions = [resolution]
    config.model.discriminator.attention_resolutions = []
    path = tmp_path / "big.safetensors"
    save_module(path, build_generator(config.model, registry), model_metadata(config, registry, "generator", 0, "-"))
    return path


def test_an_oversized_but_self_consistent_weights_file_is_refused_in_bounded_memory(tiny, tmp_path):
    import resource

    big = crafted_big_generator(tiny, tmp_path, resolution=256)  # attention over 65,536 positions
    assert big.stat().st_size < 100_000
    process = ganforge_process(
        "sample", "--weights", big, "-n", 4, "--out", tmp_path / "png", "--max-memory", "4G", cwd=tmp_path
    )
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {big}: generating: needs about 32.0 GB even for a batch of 1")
    assert "more than the 4.0 GB budget" in line
    # What the process grew to is what importing torch takes (about 1 GB), far from the 32 GB it would need.
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 < 3 * 2**30
    assert not (tmp_path / "png").exists()


def test_sample_picks_the_batch_that_fits_and_writes_the_same_images(weights, tmp_path):
    from ganforge.config import validate_config
    from ganforge.footprint import generation_estimate

    registry = load_registry()
    config = validate_config(json.loads(read_header(weights).metadata["ganforge.config"]), registry, "weights")
    per_item = generation_estimate(config, registry).per_item
    budget = generation_estimate(config, registry).total(3) + per_item // 2  # room for 3 images, not 4
    fitted = cli("sample", "--weights", weights, "-n", 8, "--out", tmp_path / "a", "--max-memory", str(budget))
    assert fitted.exit_code == 0 and "batches of 3 images (not 64)" in fitted.output
    assert cli("sample", "--weights", weights, "-n", 8, "--out", tmp_path / "b").exit_code == 0
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_evaluation_generates_in_the_batch_that_fits_and_scores_the_same(tmp_path, monkeypatch):
    """The evaluation's peak is one batch, lowered to the memory left; its figures do not depend on it."""
    import ganforge.training
    from ganforge.footprint import generation_estimate

    path = write_tiny(tmp_path, extra='\n[eval]\nmetrics = ["ms_ssim", "diversity"]\nn = 40\n')
    config, registry = load_config(path, load_registry)
    room = generation_estimate(config, registry)
    records = {}
    for limit in (room.total(3) + room.per_item // 2, 2**40):  # room for 3 images, not 4; for all
        monkeypatch.setattr(ganforge.training, "budget", lambda max_memory, device, limit=limit: limit)
        RunDir(tmp_path / f"run{limit}").prepare(resume=False, overwrite=False, warn=print)
        trainer = Trainer(config, registry, tmp_path / f"run{limit}", device="cpu")
        records[trainer.evaluation_batch] = trainer.evaluate()
    assert sorted(records) == [3, 32]  # eval.batch_size's default where everything fits
    assert records[3]["n_fake"] == records[32]["n_fake"] == 40
    assert set(records[3]["metrics"]) == {"ms_ssim", "diversity"}
    assert records[3]["metrics"] == records[32]["metrics"]


@pytest.mark.parametrize(
    "override, shown",
    [
        ("model.latent_dim=1e12", "needs about"),
        ("model.generator.channels={4=1000000000, 8=16, 16=8}", "model: cannot be built at this size"),
        ("train.batch_size=100000", "the largest batch that fits is"),
    ],
)
def test_configs_too_large_for_memory_are_refused_before_allocation(tmp_path, override, shown):
    result = cli("build", write_tiny(tmp_path), "--out", tmp_path / "run", "--set", override, "--max-memory", "8G")
    line = one_line_error(result, 2)
    assert shown in line and ("8.0 GB budget" in line or "cannot be built" in line)
    assert not (tmp_path / "run").exists()


def test_the_training_estimate_bounds_what_a_step_allocates(tiny):
    """Upper bound, not a guess: the meta-device trace covers the peak of a real CPU step (above the weights)."""
    from ganforge.footprint import training_estimate
    from ganforge.memory import LiveBytes

    config, registry = tiny
    trainer = Trainer(config, registry, "unused", device="cpu")
    trainer.data  # noqa: B018
    tracker = LiveBytes()
    with tracker:
        trainer.train_step()
    estimate = training_estimate(config, registry)
    assert tracker.peak <= estimate.total(config.train.batch_size) - estimate.fixed + 2 * estimate.per_item
    assert estimate.per_item * config.train.batch_size > tracker.peak / 4  # and not absurdly loose


def test_sample_grid_captions_say_what_data_the_weights_were_trained_on(weights, tmp_path, monkeypatch):
    import ganforge.images

    captions = []
    monkeypatch.setattr(ganforge.images, "save_grid", lambda images, path, caption: captions.append(caption))
    result = cli("sample", "--weights", weights, "-n", 4, "--out", tmp_path / "png", "--grid", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert captions == [
        f"{weights.name}: 4 samples, seed 0. Trained on: PHANTOM (procedural, not patient data) v2: "
        "48 images, seed 0, 16×16"
    ]


def test_a_log_in_a_file_has_timestamps_an_eta_and_says_what_it_waits_for(tmp_path):
    import re

    config = write_tiny(tmp_path, extra='\n[eval]\nmetrics = ["ms_ssim"]\nn = 16\n')
    threads = torch.get_num_threads()
    try:
        result = cli("build", config, "--out", tmp_path / "run", "--steps", 3, "--threads", 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)  # the rest of the suite runs in this process
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    stamped = [line for line in lines if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", line)]
    assert lines[: len(stamped)] == stamped and " ".join(lines[len(stamped) :]).startswith("done: step 3")
    texts = [line[21:] for line in stamped]
    assert texts[0] == "tiny: loading the data (phantom) ..."  # before the data, which can take minutes
    assert re.fullmatch(r"step 2/3  D \S+  G \S+  \S+ img/s  ETA 0:00:\d\d", texts[4]), texts
    assert "step 3: final evaluation (ms_ssim) ..." in texts


def test_a_file_system_without_locks_warns_and_trains_all_the_same(tmp_path, monkeypatch):
    """Some NFS mounts answer flock with ENOLCK: that must not make training impossible there."""
    import errno

    import ganforge.rundir

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(ganforge.rundir.fcntl, "flock", no_locks)
    result = cli("build", write_tiny(tmp_path), "--out", tmp_path / "run", "--steps", 1, "--no-eval")
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "cannot be locked (No locks available); make sure no other process uses it" in shown
