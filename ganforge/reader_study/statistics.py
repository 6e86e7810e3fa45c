"""The figures a visual Turing test reports, from scipy and statsmodels.

"Positive" is *generated*: sensitivity is the share of generated images called generated,
specificity the share of real images called real. The confidence-weighted score of a read is
``+confidence`` when called generated and ``−confidence`` when called real, so the ROC AUC (the
Mann–Whitney U over those scores) is 0.5 when a reader cannot tell the two apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, mannwhitneyu
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa

from .study import NO_FINDING


@dataclass(frozen=True)
class Read:
    """One answer joined with the key."""

    reader: str
    item: str
    truth: str  # "real" | "generated"
    call: str
    confidence: int
    finding: str | None
    findings: list[str] | None  # the image's findings (None: unknown)
    seconds: float

    @property
    def correct(self) -> bool:
        return self.call == self.truth

    @property
    def score(self) -> int:
        return self.confidence if self.call == "generated" else -self.confidence


def _share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def auc(reads: Sequence[Read]) -> float | None:
    """Confidence-weighted ROC AUC for "generated" (ties count half), or None without both sources."""
    positive = [r.score for r in reads if r.truth == "generated"]
    negative = [r.score for r in reads if r.truth == "real"]
    if not positive or not negative:
        return None
    u = mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u) / (len(positive) * len(negative))


def roc_curve(reads: Sequence[Read]) -> tuple[list[float], list[float]]:
    """(false-positive rates, true-positive rates) of calling "generated" at every score threshold."""
    positive = np.array([r.score for r in reads if r.truth == "generated"])
    negative = np.array([r.score for r in reads if r.truth == "real"])
    thresholds = sorted({r.score for r in reads}, reverse=True)
    fpr, tpr = [0.0], [0.0]
    for t in thresholds:
        fpr.append(float((negative >= t).mean()) if len(negative) else 0.0)
        tpr.append(float((positive >= t).mean()) if len(positive) else 0.0)
    return fpr, tpr


def scores(reads: Sequence[Read], asked_finding: bool = False) -> dict:
    """Accuracy, sensitivity/specificity, generated-called-real, binomial test vs chance, AUC, reading time."""
    n = len(reads)
    correct = sum(r.correct for r in reads)
    generated = [r for r in reads if r.truth == "generated"]
    real = [r for r in reads if r.truth == "real"]
    out: dict = {"reads": n, "correct": correct, "accuracy": _share(correct, n)}
    out["sensitivity"] = _share(sum(r.correct for r in generated), len(generated))
    out["specificity"] = _share(sum(r.correct for r in real), len(real))
    out["generated_called_real"] = _share(sum(not r.correct for r in generated), len(generated))
    if n:
        test = binomtest(correct, n, 0.5, alternative="two-sided")
        interval = test.proportion_ci(confidence_level=0.95, method="exact")
        out |= {"binomial_p": float(test.pvalue), "accuracy_ci95": [float(interval.low), float(interval.high)]}
    else:
        out |= {"binomial_p": None, "accuracy_ci95": None}
    out["auc"] = auc(reads)
    out["median_seconds"] = float(np.median([r.seconds for r in reads])) if n else None
    if asked_finding:
        known = [r for r in reads if r.findings is not None]
        right = sum(r.finding in (r.findings or [NO_FINDING]) for r in known)
        out["finding_accuracy"] = _share(right, len(known))
    return out


def _kappa(table: np.ndarray) -> float | None:
    """Cohen's κ of a 2×2 table; None where it is undefined (both readers gave one answer only)."""
    if table.sum() == 0:
        return None
    expected = (table.sum(0) * table.sum(1)).sum() / table.sum() ** 2
    if math.isclose(expected, 1.0):
        return None
    return float(cohens_kappa(table, return_results=False))


def agreement(reads: Sequence[Read]) -> dict:
    """Cohen's κ for every pair of readers (on the images both answered) and Fleiss' κ (images all answered)."""
    calls: dict[str, dict[str, int]] = {}
    for r in reads:
        calls.setdefault(r.reader, {})[r.item] = int(r.call == "generated")
    pairs = []
    for a, b in itertools.combinations(calls, 2):
        common = sorted(calls[a].keys() & calls[b].keys())
        table = np.zeros((2, 2))
        for item in common:
            table[calls[a][item], calls[b][item]] += 1
        pairs.append({"readers": [a, b], "images": len(common), "kappa": _kappa(table) if common else None})
    fleiss = None
    if len(calls) >= 2:
        shared = sorted(set.intersection(*(set(c) for c in calls.values())))
        if shared:
            data = np.array([[calls[reader][item] for reader in calls] for item in shared])
            counts, _ = aggregate_raters(data, n_cat=2)
            with np.errstate(invalid="ignore", divide="ignore"):  # one answer from everyone: κ undefined
                value = fleiss_kappa(counts, method="fleiss")
            fleiss = {"images": len(shared), "kappa": None if np.isnan(value) else float(value)}
    return {"cohen": pairs, "fleiss": fleiss}


def by_finding(reads: Sequence[Read], asked_finding: bool = False) -> dict[str, dict]:
    """``scores`` over the reads of images with each finding (``No Finding``: images without any)."""
    labelled = [r for r in reads if r.findings is not None]
    names = sorted({f for r in labelled for f in r.findings or []})
    out = {}
    for name in [*names, NO_FINDING] if labelled else []:
        subset = [r for r in labelled if (name in (r.findings or []) if name != NO_FINDING else not r.findings)]
        if subset:
            row = scores(subset, asked_finding)
            out[name] = {
                k: row[k]
                for k in (
                    "reads",
                    "accuracy",
                    "sensitivity",
                    "specificity",
                    "generated_called_real",
                    "finding_accuracy",
                )
                if k in row
            }
    return out
