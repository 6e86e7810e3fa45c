"""A sweep's results table, from the files its rows wrote: ``results.csv``, ``results.md`` and plots.

Every figure comes from a row's ``metrics.jsonl`` (its last evaluation) and every column from the
resolved ``config.toml`` the row's run wrote, so ``ganforge report`` gives the same table at any
time, also for rows still running or interrupted (their latest evaluation, with its step).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .. import jsontext
from ..checkpoint import atomic_write
from ..errors import CheckpointError
from ..plots import plot_sweep
from ..rundir import CONFIG_FILE, RunDir
from .runner import STATE_FILE

TABLE2 = ["PN", "SN", "MBD", "AM", "FA", "Opt", "LR", "Loss", "Data"]
FIGURES = {"FID": ("fid", "fid"), "MR": ("ms_ssim", "ms_ssim_real"), "MG": ("ms_ssim", "ms_ssim_fake")}
NAMES = {"adam": "Adam", "rmsprop": "RMSprop", "relativistic_hinge": "RLHinge", "wgan_gp": "WGAN-GP"}


def _name(ref: Any) -> str:
    """A component reference's name ('' when there is none)."""
    name = ref.get("name") if isinstance(ref, dict) else ref
    return name if isinstance(name, str) else ""


def table2_columns(config: dict[str, Any]) -> dict[str, Any]:
    """Table 2's columns read from a resolved config (what the run really built)."""
    model = config.get("model", {})
    g, d = model.get("generator", {}), model.get("discriminator", {})
    data = config.get("data", {})
    optim = config.get("optim", {})
    return {
        "PN": _name(g.get("feature_norm")) == "pixel",
        "SN": all("spectral" in [_name(n) for n in net.get("weight_norms", [])] for net in (g, d)),
        "MBD": bool(d.get("block", {}).get("minibatch_std")),
        "AM": bool(g.get("attention_resolutions") or d.get("attention_resolutions")),
        "FA": "hflip" in [_name(a) for a in config.get("augment", [])],
        "Opt": NAMES.get(optim.get("name"), optim.get("name")),
        "LR": optim.get("lr"),
        "Loss": NAMES.get(_name(config.get("loss")), _name(config.get("loss"))),
        "Data": data.get("name") if data.get("name") != "image_folder" else f"image_folder {Path(data['root']).name}",
    }


@dataclass
class RowResult:
    name: str
    state: str
    columns: dict[str, Any] = field(default_factory=dict)
    ours: dict[str, float | None] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)  # every evaluated figure, "metric.figure"
    protocols: dict[str, str] = field(default_factory=dict)
    step: int | None = None  # of the evaluation shown
    message: str = ""


def collect(out: Path) -> list[RowResult]:
    """One result per row recorded in ``OUT/sweep.json`` (in the order the sweep file lists them)."""
    state = _state(out)
    results = []
    for name, saved in state["rows"].items():
        run = out / name
        row_state = saved.get("state", "?")
        if row_state in ("queued", "running") and (run / CONFIG_FILE).is_file():
            row_state = "unfinished"  # started, not recorded as done: running now, or resumes on the next sweep
        result = RowResult(name, row_state, paper=saved.get("paper", {}), message=saved.get("message", ""))
        if (run / CONFIG_FILE).is_file():
            result.columns = table2_columns(tomllib.loads((run / CONFIG_FILE).read_text(encoding="utf-8")))
        evals = [r for r in RunDir(run).read_metrics() if "eval" in r]
        if evals:
            last = evals[-1]
            result.step = last["step"]
            metrics = last["eval"]["metrics"]
            result.protocols = last["eval"].get("protocols", {})
            result.figures = {f"{m}.{k}": v for m, values in metrics.items() for k, v in values.items()}
            result.ours = {col: metrics.get(m, {}).get(k) for col, (m, k) in FIGURES.items()}
        results.append(result)
    return results


def _state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    try:
        state = jsontext.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{out}: not a sweep directory (no {STATE_FILE})") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON") from exc
    return state


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "✓" if value else "x"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_csv(results: list[RowResult]) -> str:
    figures = sorted({key for r in results for key in r.figures})
    header = ["row", "state", "eval_step", *TABLE2, *(f"{c}_ours" for c in FIGURES), *(f"{c}_paper" for c in FIGURES)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*header, *figures])
    for r in results:
        writer.writerow(
            [
                r.name,
                r.state,
                r.step,
                *(r.columns.get(c) for c in TABLE2),
                *(r.ours.get(c) for c in FIGURES),
                *(r.paper.get(c) for c in FIGURES),
                *(r.figures.get(f) for f in figures),
            ]
        )
    return buffer.getvalue()


def to_markdown(results: list[RowResult], title: str) -> str:
    header = ["row", *TABLE2, "FID", "FID paper", "MR", "MR paper", "MG", "MG paper", "step", "state"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.name, *(r.columns.get(c) for c in TABLE2)]
        for column in FIGURES:
            cells += [r.ours.get(column), r.paper.get(column)]
        state = r.state + (f": {r.message}" if r.state == "failed" and r.message else "")
        lines.append("| " + " | ".join(_cell(c) for c in [*cells, r.step, state]) + " |")
    protocols = {name: text for r in results for name, text in r.protocols.items()}
    lines += [
        "",
        "Columns are read from each run's resolved `config.toml`; figures from its last evaluation",
        "(`metrics.jsonl`, at the step shown). The paper's figures come from the authors' own scripts",
        "and data (COVID-19 chest X-rays): compare trends, not values.",
        "",
        "Protocols:",
        "",
    ]
    lines += [f"- **{name}**: {text}" for name, text in sorted(protocols.items())] or ["- (no evaluation yet)"]
    return "\n".join(lines) + "\n"


def write_report(out: Path) -> list[Path]:
    """``results.csv``, ``results.md`` and the plots of the sweep in ``out``; returns the files written."""
    out = Path(out)
    results = collect(out)
    title = f"Sweep results: {Path(_state(out).get('sweep', out.name)).name}"
    atomic_write(out / "results.csv", to_csv(results))
    atomic_write(out / "results.md", to_markdown(results, title))
    return [out / "results.csv", out / "results.md", *plot_sweep(out, [r.name for r in results])]
