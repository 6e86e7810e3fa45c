"""`ganforge sweep`/`report`/`plot`: rows as ordinary builds, resumable, results from the runs' files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_tiny
from pool_features import POOL

from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.plugins import load_registry
from ganforge.rundir import RunDir, lock_holder
from ganforge.sweep import load_sweep
from ganforge.sweep.results import FIGURES, table2_columns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TESTS = Path(__file__).resolve().parent

SWEEP = """
base = "tiny.toml"

[rows.lr-low]
set = ["optim.lr=0.001"]
paper = {{ FID = 100.0, MR = 0.5, MG = 0.4 }}

[rows.plain]
set = ["model.generator.attention_resolutions=[]", "model.discriminator.attention_resolutions=[]"]
{extra}
"""


def write_sweep(folder: Path, extra: str = "") -> Path:
    metrics = f'[{{ name = "fid", extractor = "{POOL["extractor"]}", layer = "48" }}, "ms_ssim"]'
    tiny = write_tiny(folder, extra=f"\n[eval]\nmetrics = {metrics}\nn = 16\n")
    tiny.write_text('plugins = ["pool_features"]\n' + tiny.read_text())
    path = folder / "sweep.toml"
    path.write_text(SWEEP.format(extra=extra))
    return path


def ganforge(folder: Path, *args, check: int | None = 0, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "GANFORGE_CACHE": str(folder / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "ganforge", *map(str, args)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check is not None:
        assert done.returncode == check, done.stderr
    return done


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    with (out / "results.csv").open() as handle:
        return {row["row"]: row for row in csv.DictReader(handle)}


def last_eval(run: Path) -> dict:
    return [r for r in RunDir(run).read_metrics() if "eval" in r][-1]["eval"]["metrics"]


@pytest.mark.slow
def test_a_sweep_writes_the_table_from_its_runs_and_skips_finished_rows(tmp_path):
    sweep = write_sweep(tmp_path, extra='\n[rows.broken]\nset = ["optim.lr=-1"]\n')
    first = ganforge(tmp_path, "sweep", sweep, "--out", "T", "--steps", 2, "--jobs", 2, check=1)
    assert "broken failed" in first.stderr and "optim.lr" in first.stderr  # named, with its one-line error
    out = tmp_path / "T"
    table = rows_of(out)
    assert list(table) == ["lr-low", "plain", "broken"]
    assert table["broken"]["state"] == "failed" and table["lr-low"]["state"] == "done"
    for name in ("lr-low", "plain"):
        metrics = last_eval(out / name)
        assert float(table[name]["FID_ours"]) == pytest.approx(metrics["fid"]["fid"])
        assert float(table[name]["MG_ours"]) == pytest.approx(metrics["ms_ssim"]["ms_ssim_fake"])
        assert table[name]["eval_step"] == "2"
    assert table["lr-low"]["LR"] == "0.001" and table["lr-low"]["FID_paper"] == "100.0"
    assert table["plain"]["AM"] == "False" and table["lr-low"]["AM"] == "True"
    markdown = (out / "results.md").read_text()
    assert "| lr-low | ✓ | ✓ | ✓ | ✓ | ✓ | Adam | 0.001 |" in markdown and "**fid**: FID" in markdown
    for plot in ("fid.png", "losses.png", "samples.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = ganforge(tmp_path, "sweep", sweep, "--out", "T", "--steps", 2, "--only", "lr-low,plain")
    assert "0 to run" in again.stderr
    assert len(list((out / "lr-low" / "checkpoints").glob("*.safetensors"))) == 1  # not trained again
    (out / "results.md").unlink()
    ganforge(tmp_path, "report", out)
    assert (out / "results.md").read_text() == markdown
    ganforge(tmp_path, "plot", out / "plain")
    assert (out / "plain" / "plots" / "curves.png").is_file()


def sweep_until_a_checkpoint(folder: Path, sweep: Path, steps: int) -> subprocess.Popen:
    """``ganforge sweep`` of the row "plain" into ``folder/T``, running until that row has a checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "GANFORGE_CACHE": str(folder / "cache")}
    command = [sys.executable, "-m", "ganforge", "sweep", str(sweep), "--out", "T", "--steps", str(steps)]
    process = subprocess.Popen(
        [*command, "--only", "plain"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    checkpoints = folder / "T" / "plain" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step_*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return process


@pytest.mark.slow
def test_a_sweep_stopped_mid_row_resumes_that_row(tmp_path):
    sweep = write_sweep(tmp_path)
    process = sweep_until_a_checkpoint(tmp_path, sweep, 40)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=300) == 130
    stopped_at = RunDir(tmp_path / "T" / "plain").checkpoint_steps()[0]
    assert 0 < stopped_at < 40
    state = json.loads((tmp_path / "T" / "sweep.json").read_text())
    assert state["rows"]["plain"]["state"] == "interrupted"
    state["rows"]["plain"]["state"] = "running"  # what a hard kill (SIGKILL, power loss) leaves behind
    (tmp_path / "T" / "sweep.json").write_text(json.dumps(state))
    from ganforge.sweep.results import collect

    assert {r.name: r.state for r in collect(tmp_path / "T")}["plain"] == "unfinished"
    ganforge(tmp_path, "sweep", sweep, "--out", "T", "--steps", 40, "--only", "plain")
    log = (tmp_path / "T" / "logs" / "plain.log").read_text()
    assert "--resume" in log.splitlines()[-1] or any(
        line.startswith("$") and "--resume" in line for line in log.splitlines()
    )
    assert RunDir(tmp_path / "T" / "plain").checkpoint_steps()[0] == 40
    assert rows_of(tmp_path / "T")["plain"]["state"] == "done"


def test_sweep_files_are_checked_and_grids_expand(tmp_path):
    base = write_tiny(tmp_path)
    path = tmp_path / "grid.toml"
    path.write_text(f'base = "{base.name}"\n[grid]\n"optim.lr" = [0.001, 0.002]\n"augment" = [[], ["hflip"]]\n')
    sweep = load_sweep(path)
    names = ["lr=0.001,augment=", "lr=0.001,augment=hflip", "lr=0.002,augment=", "lr=0.002,augment=hflip"]
    assert [r.name for r in sweep.rows] == names
    assert sweep.rows[1].overrides == ["optim.lr=0.001", 'augment=["hflip"]']
    with pytest.raises(ConfigError, match="^only: no row 'nope'"):
        sweep.select(["nope"])
    path.write_text(f'base = "{base.name}"\n[rows.a]\nsett = []\n')
    with pytest.raises(ConfigError, match="grid.toml: rows.a.sett: unknown key"):
        load_sweep(path)


def test_every_table2_row_builds_what_the_paper_says():
    sweep = load_sweep(EXAMPLES / "table2.toml")
    assert len(sweep.rows) == 20  # 19 configurations + the MSG-GAN paper's own row
    for row in sweep.rows:
        config, _ = load_config(sweep.base, load_registry, row.overrides)
        columns = table2_columns(config.model_dump(mode="json"))
        paper = {k: v for k, v in row.paper.items() if k not in (*FIGURES, "label", "Data")}
        assert {k: columns[k] for k in paper} == paper, row.name
        assert columns["Data"] == ("phantom" if row.paper["Data"] == "X-ray" else "image_folder img_align_celeba")
        assert config.model.image_channels == (3 if row.paper["Data"] == "CelebA" else 1)
        assert config.eval.n == (10000 if row.paper["Data"] == "CelebA" else 3616)


def test_a_table2_row_switches_to_real_data_with_set(tmp_path):
    row = next(r for r in load_sweep(EXAMPLES / "table2.toml").rows if r.name == "SAMGAN8")
    switch = [f"data.root={tmp_path}", "data.name=image_folder", 'data.classes=["COVID"]']
    config, _ = load_config(EXAMPLES / "samgan.toml", load_registry, [*row.overrides, *switch])
    assert config.data.name == "image_folder" and config.data.root == str(tmp_path)
    assert "size" not in config.data.params  # the phantom's keys went with it


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_takes_its_row_along_and_the_rerun_trains_it_once(tmp_path):
    """SIGKILL reaches no handler: the row notices its sweep is gone, checkpoints and stops (no orphan)."""
    sweep = write_sweep(tmp_path)
    process = sweep_until_a_checkpoint(tmp_path, sweep, 60)
    row = tmp_path / "T" / "plain"
    holder = lock_holder(row)
    assert holder and holder != process.pid  # the row's own build process holds its folder
    process.kill()
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while lock_holder(row) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock_holder(row) is None, "the row outlived its sweep"
    deadline = time.monotonic() + 30
    while running(holder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(holder)
    stopped_at = RunDir(row).checkpoint_steps()[0]
    assert stopped_at < 60
    ganforge(tmp_path, "sweep", sweep, "--out", "T", "--steps", 60, "--only", "plain")
    steps = [r["step"] for r in RunDir(row).read_metrics() if "loss_d" in r]
    assert steps == list(range(1, 61))  # one ordered log: nothing trained twice, nothing lost
    assert rows_of(tmp_path / "T")["plain"]["state"] == "done"


def running(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie waiting for a reaper that never comes is not)?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_row_killed_by_a_signal_says_which_and_why():
    from ganforge.sweep.runner import killed_by

    assert killed_by(signal.SIGKILL).startswith("killed by SIGKILL: most often the kernel's out-of-memory killer")
    assert killed_by(signal.SIGSEGV).startswith("killed by SIGSEGV: a crash")
    assert killed_by(signal.SIGUSR1) == "killed by SIGUSR1: sent by another process"


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ('base = "tiny.toml"\n[rows.a]\nsett = ["optim.lr=0.1"]\n', "rows.a.sett", "unknown key"),
        ('base = "tiny.toml"\n[rows.a]\nset = "optim.lr=0.1"\n', "rows.a.set", "Input should be a valid list"),
        ("[rows.a]\n", "base", "required key is missing"),
        ('base = "tiny.toml"\n[rows\n', None, "invalid TOML"),
    ],
)
def test_sweep_files_report_file_and_key_as_every_config_does(tmp_path, text, key, reason):
    write_tiny(tmp_path)
    (tmp_path / "sweep.toml").write_bytes(text.encode())
    with pytest.raises(ConfigError) as err:
        load_sweep(tmp_path / "sweep.toml")
    assert str(err.value).startswith(f"{tmp_path / 'sweep.toml'}: " + (f"{key}: " if key else ""))
    assert reason in str(err.value)
