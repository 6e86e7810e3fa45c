"""PNG plots of what a run logged (``metrics.jsonl``) and of a sweep's rows side by side.

matplotlib's object API (no pyplot state, no display): safe in threads and on machines without
a screen. Every PNG is written to a temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .checkpoint import replacing
from .rundir import SAMPLES, RunDir

PLOTS = "plots"


def save_figure(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def eval_series(records: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``metric.figure`` → [(step, value)] over the evaluation records."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for metric, values in record.get("eval", {}).get("metrics", {}).items():
            for name, value in values.items():
                label = name if name.startswith(metric) else f"{metric}.{name}"
                series.setdefault(label, []).append((record["step"], value))
    return series


def collapse_series(records: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``collapse alarm: figure`` → [(step, value)] over the collapse alarm's records."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for name, value in record.get("collapse", {}).items():
            series.setdefault(f"collapse alarm: {name}", []).append((record["step"], value))
    return series


def loss_series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [s for s, _ in points], [v for _, v in points]


def plot_run(run: str | Path) -> Path:
    """``RUN/plots/curves.png``: D and G losses, images/second, the collapse alarm's figures and every
    evaluated figure over steps."""
    records = RunDir(run).read_metrics()
    evals = {**collapse_series(records), **eval_series(records)}
    panels = 2 + len(evals)
    figure = Figure(figsize=(5 * min(panels, 3), 3.4 * ((panels + 2) // 3)), layout="constrained")
    axes = [figure.add_subplot((panels + 2) // 3, min(panels, 3), i + 1) for i in range(panels)]
    for key, label in (("loss_d", "D"), ("loss_g", "G")):
        axes[0].plot(*loss_series(records, key), label=label)
    axes[0].set(title="losses", xlabel="step")
    axes[0].legend()
    axes[1].plot(*loss_series(records, "images_per_second"), color="tab:green")
    axes[1].set(title="training images / second", xlabel="step")
    for ax, (label, points) in zip(axes[2:], evals.items()):
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o")
        ax.set(title=label, xlabel="step")
    figure.suptitle(Path(run).name)
    return save_figure(figure, Path(run) / PLOTS / "curves.png")


def latest_samples(run: Path) -> Path | None:
    grids = sorted((run / SAMPLES).glob("step_*.png"))
    return grids[-1] if grids else None


def plot_sweep(out: Path, rows: Sequence[str]) -> list[Path]:
    """``fid.png`` (FID over steps per row), ``losses.png`` (D/G per row), ``samples.png`` (rows + real)."""
    from PIL import Image

    runs = {name: RunDir(out / name).read_metrics() for name in rows if (out / name).is_dir()}
    written = []
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for name, records in runs.items():
        points = next((p for label, p in eval_series(records).items() if label == "fid"), [])
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=name)
    ax.set(title="FID over training", xlabel="step", ylabel="FID")
    if ax.lines:
        ax.legend(fontsize="small")
    written.append(save_figure(figure, out / "fid.png"))

    columns = min(4, max(1, len(runs)))
    lines = max(1, -(-len(runs) // columns))
    figure = Figure(figsize=(4 * columns, 3 * lines), layout="constrained")
    for i, (name, records) in enumerate(runs.items()):
        ax = figure.add_subplot(lines, columns, i + 1)
        for key, label in (("loss_d", "D"), ("loss_g", "G")):
            ax.plot(*loss_series(records, key), label=label)
        ax.set(title=name, xlabel="step")
        ax.legend(fontsize="small")
    written.append(save_figure(figure, out / "losses.png"))

    found = [(name, latest_samples(out / name)) for name in runs]
    grids = [(name, path) for name, path in found if path is not None]
    real = next(
        ((out / name / SAMPLES / "real.png") for name in runs if (out / name / SAMPLES / "real.png").is_file()), None
    )
    panels = ([("real images", real)] if real else []) + grids
    if panels:
        figure = Figure(figsize=(3.2 * len(panels), 3.6), layout="constrained")
        for i, (name, path) in enumerate(panels):
            ax = figure.add_subplot(1, len(panels), i + 1)
            with Image.open(path) as image:
                ax.imshow(image.convert("RGB"))
            ax.set_title(name if name == "real images" else f"{name}\n{path.stem.replace('_', ' ')}", fontsize="small")
            ax.axis("off")
        written.append(save_figure(figure, out / "samples.png"))
    return written
