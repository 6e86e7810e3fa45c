"""ganforge.api: the functions the commands wrap, called from Python as docs/api.md shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import write_tiny

import ganforge.api as gf
from ganforge.checkpoint import read_header
from ganforge.errors import CheckpointError, GanforgeError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_docs_example_runs_as_written(tmp_path, monkeypatch):
    (block,) = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    tiny = write_tiny(tmp_path)
    assert 'CONFIG = "examples/demo.toml"\n' in block
    monkeypatch.chdir(tmp_path)
    code = block.replace('CONFIG = "examples/demo.toml"', f"CONFIG = {str(tiny)!r}").replace("300", "3")
    scope: dict = {}
    exec(compile(code, str(DOCS), "exec"), scope)  # noqa: S102 (our own documentation)
    run, samples = scope["run"], scope["samples"]
    assert run.step == 3 and run.out == Path("runs/api-demo") and run.generator_ema.is_file()
    assert read_header(run.generator_ema).metadata["ganforge.step"] == "3"
    assert samples.count == 16 and len(list(samples.out.glob("*.png"))) == 16 and samples.grid.is_file()


def test_train_resumes_to_a_total_and_refuses_what_it_cannot_resume(tmp_path):
    tiny = write_tiny(tmp_path)
    first = gf.train(tiny, out=tmp_path / "run", steps=2, evaluate=False)
    again = gf.train(tiny, resume=first.out, steps=4, evaluate=False)
    assert (first.step, again.step, again.out) == (2, 4, first.out)
    with pytest.raises(CheckpointError, match="not a ganforge run directory"):
        gf.train(tiny, resume=tmp_path / "nowhere", steps=4)


def test_sample_gives_the_same_images_whatever_the_batch(tmp_path):
    run = gf.train(write_tiny(tmp_path), out=tmp_path / "run", steps=1, evaluate=False)
    a = gf.sample(run.generator_ema, n=5, out=tmp_path / "a", batch_size=2)
    b = gf.sample(run.generator_ema, n=5, out=tmp_path / "b")
    assert (a.batch_size, b.batch_size, a.resolution) == (2, 64, 16)
    for x, y in zip(sorted(a.out.iterdir()), sorted(b.out.iterdir())):
        assert x.read_bytes() == y.read_bytes()


def test_evaluate_and_audit_return_their_figures(tmp_path):
    tiny = write_tiny(tmp_path)
    run = gf.train(tiny, out=tmp_path / "run", steps=1, evaluate=False, overrides=["data.holdout=0.25"])
    scored = gf.evaluate(tiny, weights=run.generator_ema, n=16, metrics=["ms_ssim"])
    assert (scored.n_fake, scored.n_real, scored.resolution) == (16, 16, 16)
    assert [r.name for r in scored.results] == ["ms_ssim"] and 0 < scored.record["metrics"]["ms_ssim"]["ms_ssim_real"]
    assert scored.record["real"].startswith("PHANTOM")
    audit = gf.audit(run.out, n=24, spaces=["pixels"], metrics=["near_copies"])
    assert audit.record["n_fake"] == 24 and audit.out == run.out / "audit" and all(p.is_file() for p in audit.pairs)
    with pytest.raises(GanforgeError, match="exactly one of weights"):
        gf.evaluate(tiny)
