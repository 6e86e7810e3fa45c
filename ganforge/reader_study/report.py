"""``ganforge reader-study report``: the study's answers joined with its key, as JSON, Markdown, CSV and a plot.

Written to ``STUDY/report/``: ``report.json`` (every figure), ``report.md`` (the tables),
``answers.csv`` (one row per answer, with the truth: the export for other tools) and
``report.png`` (accuracy per reader with 95% intervals against chance, and ROC curves).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..checkpoint import atomic_write
from ..errors import GanforgeError
from ..plots import save_figure
from .statistics import Read, agreement, by_finding, roc_curve, scores
from .store import Store
from .study import Key, Study, source_counts

REPORT = "report"


def reads(study: Study, key: Key) -> list[Read]:
    """Every answer in the study's store, joined with ``key``."""
    if not study.answers_path.is_file():
        raise GanforgeError(f"{study.root}: no answers yet (add readers with ganforge reader-study add-reader)")
    items = key.items
    return [
        Read(a.reader, a.item, items[a.item].source, a.call, a.confidence, a.finding, items[a.item].findings, a.seconds)
        for a in Store(study.answers_path).answers()
    ]


def compute(study: Study, key: Key, all_reads: Sequence[Read]) -> dict:
    """The whole report as one JSON-ready dict."""
    asked = study.manifest.settings.ask_finding
    readers: dict[str, list[Read]] = {}
    for r in all_reads:
        readers.setdefault(r.reader, []).append(r)
    per_reader = [{"reader": name, **scores(rs, asked)} for name, rs in readers.items()]
    accuracies = [row["accuracy"] for row in per_reader if row["accuracy"] is not None]
    return {
        "study": study.manifest.title,
        "images": source_counts(key),
        "readers": per_reader,
        "pooled": scores(all_reads, asked),
        "mean_reader_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
        "agreement": agreement(all_reads),
        "by_finding": by_finding(all_reads, asked),
    }


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}")


def markdown(report: dict) -> str:
    images = report["images"]
    lines = [
        f"# Reader study: {report['study']}",
        "",
        f"{images['real']} real and {images['generated']} generated images; {len(report['readers'])} readers. "
        "Positive = generated: sensitivity = generated called generated, specificity = real called real. "
        "p: two-sided exact binomial test of accuracy against chance (0.5). "
        "AUC: confidence-weighted (±confidence by call).",
        "",
        "| reader | reads | accuracy (95% CI) | sensitivity | specificity | generated called real | p | AUC "
        "| median s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [*report["readers"], {"reader": "**pooled**", **report["pooled"]}]:
        ci = row["accuracy_ci95"]
        interval = f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else ""
        lines.append(
            f"| {row['reader']} | {row['reads']} | {_f(row['accuracy'])}{interval} | {_f(row['sensitivity'])} "
            f"| {_f(row['specificity'])} | {_f(row['generated_called_real'])} | {_p(row['binomial_p'])} "
            f"| {_f(row['auc'])} | {_f(row['median_seconds'], 1)} |"
        )
    lines += ["", f"Mean reader accuracy: {_f(report['mean_reader_accuracy'])}.", "", "## Agreement", ""]
    fleiss = report["agreement"]["fleiss"]
    if fleiss:
        lines.append(f"Fleiss' κ over the {fleiss['images']} images every reader answered: {_f(fleiss['kappa'])}.")
    lines += ["", "| readers | images | Cohen's κ |", "|---|---|---|"]
    lines += [
        f"| {' / '.join(p['readers'])} | {p['images']} | {_f(p['kappa'])} |" for p in report["agreement"]["cohen"]
    ]
    if report["by_finding"]:
        extra = "finding_accuracy" in next(iter(report["by_finding"].values()))
        lines += [
            "",
            "## By finding",
            "",
            "| finding | reads | accuracy | generated called real | specificity"
            + (" | finding named |" if extra else " |"),
            "|---|---|---|---|---|" + ("---|" if extra else ""),
        ]
        for name, row in report["by_finding"].items():
            cells = [
                name,
                str(row["reads"]),
                _f(row["accuracy"]),
                _f(row["generated_called_real"]),
                _f(row["specificity"]),
            ] + ([_f(row.get("finding_accuracy"))] if extra else [])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def answers_csv(all_reads: Sequence[Read]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["reader", "image", "truth", "call", "confidence", "finding", "image_findings", "seconds"])
    for r in all_reads:
        truth_findings = "" if r.findings is None else ("|".join(r.findings) or "No Finding")
        writer.writerow(
            [r.reader, r.item, r.truth, r.call, r.confidence, r.finding or "", truth_findings, f"{r.seconds:.3f}"]
        )
    return buffer.getvalue()


def plot(report: dict, all_reads: Sequence[Read], path: Path) -> Path:
    figure = Figure(figsize=(10, 4.2))
    left, right = figure.subplots(1, 2)
    rows = [r for r in report["readers"] if r["accuracy"] is not None]
    names = [r["reader"] for r in rows] + ["pooled"]
    values = [r["accuracy"] for r in rows] + [report["pooled"]["accuracy"] or 0]
    intervals = [r["accuracy_ci95"] for r in rows] + [report["pooled"]["accuracy_ci95"] or [0, 0]]
    errors = [[v - ci[0] for v, ci in zip(values, intervals)], [ci[1] - v for v, ci in zip(values, intervals)]]
    left.bar(range(len(names)), values, yerr=errors, capsize=4, color=["#5a8dc8"] * len(rows) + ["#444"])
    left.axhline(0.5, color="#c33", linestyle="--", label="chance")
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    left.set_ylim(0, 1)
    left.set_ylabel("accuracy (95% exact CI)")
    left.set_title("Real vs generated: accuracy")
    left.legend(loc="lower right")
    by_reader: dict[str, list[Read]] = {}
    for r in all_reads:
        by_reader.setdefault(r.reader, []).append(r)
    for (name, rs), row in zip(by_reader.items(), rows):
        fpr, tpr = roc_curve(rs)
        right.plot(fpr, tpr, marker="o", markersize=3, label=f"{name} (AUC {_f(row['auc'], 2)})")
    right.plot([0, 1], [0, 1], color="#999", linestyle=":")
    right.set_xlabel("real called generated (1 − specificity)")
    right.set_ylabel("generated called generated (sensitivity)")
    right.set_title("Confidence-weighted ROC")
    right.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def write_report(study: Study, out: Path | None = None) -> tuple[dict, Path]:
    """Compute the report and write its four files to ``out`` (default ``STUDY/report``)."""
    key = study.key()
    all_reads = reads(study, key)
    if not all_reads:
        raise GanforgeError(f"{study.root}: no answers yet; nothing to report")
    report = compute(study, key, all_reads)
    out = out or study.root / REPORT
    atomic_write(out / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write(out / "report.md", markdown(report))
    atomic_write(out / "answers.csv", answers_csv(all_reads))
    plot(report, all_reads, out / "report.png")
    return report, out
