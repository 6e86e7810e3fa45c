"""ganforge from Python: what the ``ganforge`` commands do, as functions that return what they made
(:func:`train`, :func:`sweep`, :func:`sample`, :func:`lco`, :func:`evaluate`, :func:`audit`, :func:`tstr`).

::

    import ganforge.api as gf

    run = gf.train("examples/demo.toml", out="runs/demo", steps=300, overwrite=True)
    samples = gf.sample(run.generator_ema, n=16, out="runs/demo/png", grid="runs/demo/grid.png")

Each function raises a :class:`~ganforge.errors.GanforgeError` subclass (one line, naming the file
or key) for what a user can fix, and :class:`~ganforge.errors.Interrupted` when SIGINT/SIGTERM
stopped training after a checkpoint. The command line only parses options, calls these and prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .assembly import Generator
from .audit.run import Audit
from .config import Config, load_config
from .errors import GanforgeError
from .evaluation import MetricResult
from .lco import Archive, Classifier, LCOSettings
from .plugins import load_registry
from .registry import Registry
from .rundir import CONFIG_FILE, GENERATOR, GENERATOR_EMA, RunDir, RunLock


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: its folder and the step it reached."""

    out: Path
    step: int

    @property
    def generator_ema(self) -> Path:
        """The EMA generator's weights: what to sample from."""
        return self.out / GENERATOR_EMA

    @property
    def generator(self) -> Path:
        return self.out / GENERATOR


@dataclass(frozen=True)
class SampleResult:
    """PNGs written by :func:`sample`."""

    out: Path
    count: int
    resolution: int
    batch_size: int  # what fitted the memory budget (at most the one asked for)
    grid: Path | None


def _warn_to(console: Console):
    return lambda message: console.print(f"[yellow]warning[/]: {message}")


def _registry_for(plugins: Sequence[str]) -> Callable[..., Registry]:
    """What ``load_config`` calls with a config's own plugin modules: those plus the caller's ``plugins``."""

    def registry_for(modules: Sequence[str] = ()) -> Registry:
        return load_registry([*modules, *plugins])

    return registry_for


def load_experiment(
    path: str | Path, overrides: Sequence[str] = (), resume: str | Path | None = None
) -> tuple[Config, Registry]:
    """The experiment config at ``path`` with ``overrides`` and the registry it names. A run's own
    ``config.toml`` given with ``resume`` is read as that run recorded it (:func:`~ganforge.config.as_recorded`)."""
    own = resume is not None and Path(path).resolve() == (Path(resume) / CONFIG_FILE).resolve()
    return load_config(Path(path), load_registry, list(overrides), recorded=own)


def train(
    experiment: Config | str | Path,
    out: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    steps: int | None = None,
    epochs: float | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    evaluate: bool = True,
    device: str = "auto",
    max_memory: str | None = None,
    registry: Registry | None = None,
    console: Console | None = None,
) -> TrainResult:
    """Assemble the GAN ``experiment`` describes (a config file, or a loaded :class:`Config`; ``overrides``
    are ``KEY=VALUE`` as ``--set`` takes them) and train it into ``out``.

    A run's own ``config.toml`` given with ``resume`` is read as that run recorded it
    (:func:`load_experiment`). ``out`` defaults to ``resume``, then ``runs/<name>``;
    ``steps``/``epochs`` are totals, also when resuming. Before anything is allocated the memory
    training needs is checked against ``max_memory`` (default: 80 % of what is available); the run
    directory is locked for the life of the call, so a second process cannot train into it.
    """
    from .footprint import check_training_memory
    from .memory import budget
    from .training import Trainer, select_device

    if isinstance(experiment, Config):
        config, registry = experiment, registry or load_registry(experiment.plugins)
    else:
        config, registry = load_experiment(experiment, overrides, resume)
    console = console or Console(stderr=True)
    check_training_memory(config, registry, budget(max_memory, select_device(device, config.train.device)))
    if resume is not None:
        RunDir(resume).require_run()  # before the lock creates anything at a mistyped path
    target = Path(out or resume or Path("runs") / config.name)
    main_rank = os.environ.get("RANK", "0") == "0"
    warn = _warn_to(console)
    with RunLock(target, warn=warn) if main_rank else nullcontext():
        if main_rank:
            same = resume is not None and Path(resume).resolve() == target.resolve()
            RunDir(target).prepare(resume=same, overwrite=overwrite, warn=warn)
        trainer = Trainer(config, registry, target, device=device, console=console)
        try:
            trainer.dist.barrier()
            if resume is not None:
                trainer.resume(resume)
            trainer.fit(trainer.total_steps(steps, epochs), evaluate=evaluate)
            trainer.dist.barrier()  # no rank tears the process group down while another still uses it
        finally:
            trainer.dist.close()
    return TrainResult(target, trainer.step)


@dataclass(frozen=True)
class SweepResult:
    """A sweep's rows and the report written from them."""

    out: Path
    states: dict[str, str]  # row → done | skipped (finished before) | failed | interrupted
    failures: dict[str, str]  # row → its one-line error (its log: OUT/logs/ROW.log)
    report: list[Path]  # results.csv, results.md, then the plots

    @property
    def results(self) -> Path:
        """The results table in Markdown."""
        return self.out / "results.md"


def sweep(
    file: str | Path,
    out: str | Path | None = None,
    *,
    only: Sequence[str] = (),
    steps: int | None = None,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    console: Console | None = None,
) -> SweepResult:
    """Train every row of a sweep file (``only``: these rows), each :func:`train` in a process of its own,
    ``jobs`` at a time, into ``out`` (default ``runs/<file stem>``); then write the results table and plots.

    Rows finished before with the same settings are skipped and interrupted ones resume, so calling
    it again after any stop finishes the sweep. A failed row does not stop the others.
    """
    from .sweep import SweepRunner, load_sweep, write_report

    spec = load_sweep(Path(file))
    target = Path(out) if out is not None else Path("runs") / Path(file).stem
    runner = SweepRunner(spec, target, steps=steps, sets=list(overrides), jobs=jobs, console=console)
    runs = runner.run(spec.select(list(only)))
    failures = {run.row.name: run.message for run in runs if run.state == "failed"}
    return SweepResult(target, {run.row.name: run.state for run in runs}, failures, write_report(target))


def sample(
    weights: str | Path,
    n: int,
    out: str | Path,
    *,
    seed: int = 0,
    batch_size: int = 64,
    grid: str | Path | None = None,
    device: str = "cpu",
    max_memory: str | None = None,
    plugins: Sequence[str] = (),
    console: Console | None = None,
) -> SampleResult:
    """Write ``n`` PNGs from a generator weights file (same seed, same bytes), and optionally a grid.

    The file is loaded as untrusted data (:mod:`ganforge.weights`): only installed plugins and the
    ``plugins`` modules named here are imported. Batches are the largest up to ``batch_size`` that
    fit ``max_memory``; a batch of constant images is warned about.
    """
    from .export import GRID_LIMIT, write_samples
    from .images import save_grid
    from .sampling import sample_stream, trained_on, warn_if_constant

    console = console or Console(stderr=True)
    weights, out = Path(weights), Path(out)
    loaded = load_for_sampling(weights, load_registry(plugins), device, batch_size, max_memory, console)
    stream = sample_stream(loaded.generator, n, seed, loaded.batch_size, loaded.device)
    stream = warn_if_constant(stream, _warn_to(console), str(weights))
    first = write_samples(stream, n, out)
    if grid is not None:
        shown = f"the first {GRID_LIMIT} of " if n > GRID_LIMIT else ""
        save_grid(first, grid, f"{weights.name}: {shown}{n} samples, seed {seed}.{trained_on(weights)}")
    resolution = loaded.config.model.resolution
    return SampleResult(out, n, resolution, loaded.batch_size, Path(grid) if grid is not None else None)


@dataclass(frozen=True)
class Loaded:
    """A generator loaded for sampling, with what it was loaded with."""

    generator: Generator
    config: Config
    registry: Registry
    device: torch.device
    batch_size: int  # the largest up to the one asked for that fits the memory budget


def load_for_sampling(
    weights: Path, registry: Registry, device: str, batch_size: int, max_memory: str | None, console: Console
) -> Loaded:
    """Load ``weights`` as untrusted data (``registry`` decides which plugins exist) and pick the batch
    size, up to ``batch_size``, that fits ``max_memory``."""
    from .footprint import fitting_batch
    from .memory import budget
    from .sampling import load_generator
    from .training import select_device

    generator, config = load_generator(weights, registry)
    dev = select_device(device)
    fitted = fitting_batch(config, registry, batch_size, budget(max_memory, dev), str(weights))
    if fitted < batch_size:
        console.print(f"batches of {fitted} images (not {batch_size}): what fits in the memory budget")
    return Loaded(generator, config, registry, dev, fitted)


@dataclass(frozen=True)
class EvaluateResult:
    """Figures of generated images against real ones."""

    results: list[MetricResult]  # one per metric, in the order asked
    record: dict[str, Any]  # what `ganforge evaluate --json` writes
    n_fake: int
    n_real: int
    resolution: int


def evaluate(
    real: str | Path,
    *,
    weights: str | Path | None = None,
    fake: str | Path | None = None,
    n: int = 0,
    metrics: Sequence[str] = (),
    inception_weights: str | Path | None = None,
    resolution: int | None = None,
    seed: int = 0,
    device: str = "auto",
    cache: bool = True,
    max_memory: str | None = None,
    plugins: Sequence[str] = (),
) -> EvaluateResult:
    """Score a generator (``weights``) or a folder of images (``fake``) against ``real``.

    ``real`` is an experiment config (its dataset, at its resolution) or a folder of images (read
    at the generator's resolution, or ``resolution``). ``metrics`` default to the config's
    ``eval.metrics``, then FID and MS-SSIM; ``n`` images per side (0: the whole real set).
    """
    from .config import ComponentRef
    from .evaluation import EvalContext, as_record, generated_set, run_metrics, subset
    from .inception import resolve_weights
    from .training import select_device

    if (weights is None) == (fake is None):
        raise GanforgeError("evaluate: give exactly one of weights (a generator) and fake (a folder of images)")
    real = Path(real)
    registry_for = _registry_for(plugins)
    dev = select_device(device)
    config, registry = load_config(real, registry_for) if real.suffix == ".toml" else (None, registry_for())
    refs = [ComponentRef(name=name) for name in metrics] or (config.eval.metrics if config else [])
    refs = refs or [ComponentRef(name="fid"), ComponentRef(name="ms_ssim")]
    for ref in refs:
        registry.get("metric", ref.name)  # unknown names fail before any work
    generator, channels, batch = None, None, 64
    if weights is not None:
        loaded = load_for_sampling(Path(weights), registry, device, batch, max_memory, Console(stderr=True))
        generator, batch = loaded.generator, loaded.batch_size
        resolution, channels = loaded.config.model.resolution, loaded.config.model.image_channels
    real_set = _real_images(real, config, registry, resolution, channels)
    real_images = subset(real_set.images, n, seed)
    folder = Path(fake) if fake is not None else None
    like = real_set.images.shape
    fake_images = generated_set(generator, folder, n or len(real_images), seed, dev, registry, like, batch)
    ctx = EvalContext(real_images, fake_images, dev, resolve_weights(inception_weights), cache=cache)
    results = run_metrics(refs, registry, ctx)
    record = {**as_record(results, ctx), "real": real_set.description, "fake": str(weights or fake)}
    return EvaluateResult(results, record, len(fake_images), len(real_images), real_images.shape[-1])


def _real_images(real: Path, config: Config | None, registry: Registry, resolution: int | None, channels: int | None):
    """An experiment config's dataset (its own resolution), or a folder read at the given resolution."""
    from .assembly import build_dataset

    if config is not None:
        return build_dataset(config, registry)
    if resolution is None:
        raise GanforgeError(f"{real}: a folder of real images needs weights (or a resolution) to know the image size")
    return registry.build(
        "dataset", "image_folder", {"root": str(real)}, resolution=resolution, image_channels=channels or 1
    )


@dataclass(frozen=True)
class TSTRResult:
    """Held-out real AUROC per finding of classifiers trained on real, synthetic, and both."""

    auroc: dict[str, dict[str, float]]  # trained on -> finding -> AUROC (nan where a class has one label)
    synthetic: str  # the synthetic set's description


def tstr(classifier_config: str | Path, synthetic: str | Path, *, device: str = "auto") -> TSTRResult:
    """Train-on-synthetic / test-on-real with the classifier ``classifier_config`` describes.

    ``synthetic`` is a labelled set as ``ganforge lco --archive`` writes it (``images/`` and
    ``labels.csv``).
    """
    from .classification import train_on_synthetic
    from .config import ClassifierConfig
    from .training import select_device

    config, registry = load_config(Path(classifier_config), load_registry, (), ClassifierConfig)
    folder = Path(synthetic)
    data = registry.build(
        "dataset",
        "image_folder",
        # Absolute: a relative labels_csv is read relative to the root, which would double the folder.
        {"root": str(folder / "images"), "labels_csv": str((folder / "labels.csv").absolute())},
        resolution=config.resolution,
        image_channels=config.image_channels,
    )
    results = train_on_synthetic(config, registry, data, select_device(device, config.train.device))
    return TSTRResult(results, data.description)


def audit(
    run: str | Path,
    *,
    weights: str | Path | None = None,
    fake: str | Path | None = None,
    n: int = 0,
    metrics: Sequence[str] = (),
    spaces: Sequence[str] = (),
    pairs: int = 16,
    out: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    inception_weights: str | Path | None = None,
    cache: bool = True,
    plugins: Sequence[str] = (),
) -> Audit:
    """The privacy audit of a run trained with ``data.holdout`` (docs/privacy.md): each metric (default
    all three) in each feature space (default pixels and inception), on ``n`` images of its EMA
    generator (or of ``weights``, or the folder ``fake``); results and closest pairs in ``out`` [RUN/audit]."""
    from .audit.run import audit_metrics, audit_run
    from .training import select_device

    return audit_run(
        Path(run),
        _registry_for(plugins),
        weights=Path(weights) if weights is not None else None,
        fake=Path(fake) if fake is not None else None,
        count=n,
        seed=seed,
        metrics=audit_metrics(metrics, spaces),
        pairs=pairs,
        out=Path(out) if out is not None else None,
        device=select_device(device),
        inception_weights=Path(inception_weights) if inception_weights is not None else None,
        cache=cache,
    )


@dataclass(frozen=True)
class LCOArchive:
    """Labelled samples written by :func:`lco`: an ``image_folder`` dataset plus ``summary.json``."""

    out: Path
    count: int  # images accepted and written
    labels_csv: Path
    summary: Path
    records: list[dict[str, Any]]  # one per requested combination (see ganforge.lco.summarise)
    classifiers: list[str]


def lco_plan(labels: str | None, archive: str | None, n: int) -> list[tuple[str, int]]:
    """(combination, count) pairs of a request: ``labels`` for ``n`` images, or an ``archive`` spec."""
    from .lco import parse_archive

    if bool(labels) == bool(archive):
        raise GanforgeError("latent class optimisation: give exactly one of labels and archive")
    return [(labels, n)] if labels else parse_archive(archive or "")


def lco(
    weights: str | Path,
    classifiers: Sequence[str | Path],
    out: str | Path,
    *,
    labels: str | None = None,
    archive: str | None = None,
    n: int = 16,
    seed: int = 0,
    settings: LCOSettings | None = None,
    grid: str | Path | None = None,
    judge: str | Path | None = None,
    ground_truth: str | None = None,
    device: str = "cpu",
    max_memory: str | None = None,
    plugins: Sequence[str] = (),
    on_step: Callable[[str, int, Any], None] | None = None,
    console: Console | None = None,
) -> LCOArchive:
    """Labelled samples by latent class optimisation (docs/pggan.md): latents optimised until every
    classifier (an ensemble must agree) finds ``labels`` (or each combination of ``archive``), scored
    by an independent ``judge`` classifier and a ``ground_truth`` analyser when given.

    ``on_step(combination, count, progress)`` is called after each optimisation step. Nothing is
    written when no latent was accepted: the error says which setting to change.
    """
    from .lco import build_archive, check_label_names, nothing_accepted
    from .sampling import trained_on

    if not classifiers:
        raise GanforgeError("latent class optimisation needs at least one classifier")
    weights, out = Path(weights), Path(out)
    plan = lco_plan(labels, archive, n)
    settings = settings or LCOSettings()
    console = console or Console(stderr=True)
    loaded = load_for_sampling(weights, load_registry(plugins), device, settings.batch_size, max_memory, console)
    settings = replace(settings, batch_size=loaded.batch_size)
    members = [_classifier(path, loaded.registry) for path in classifiers]
    referee = _classifier(judge, loaded.registry) if judge else None
    analyser = (
        loaded.registry.build("analyser", ground_truth, _analyser_params(ground_truth, loaded.config))
        if ground_truth
        else None
    )
    others = [(f"judge {referee.name}", referee.names)] if referee else []
    others += [(f"ground truth {ground_truth}", analyser.label_names)] if analyser else []
    names = check_label_names(members, others)
    latent = loaded.config.model.latent_dim
    result = build_archive(
        loaded.generator, latent, plan, members, settings, seed, loaded.device, referee, analyser, on_step
    )
    if len(result.images) == 0:
        raise nothing_accepted(settings, result.records)
    description = (
        f"LCO samples from {weights.name} with classifier(s) {', '.join(c.name for c in members)} "
        f"(threshold {settings.threshold}, {settings.steps} steps, {settings.views} views, pool {settings.pool}, "
        f"seed {seed}).{trained_on(weights)}"
    )
    summary = {
        "generator": str(weights),
        "classifiers": [str(p) for p in classifiers],
        "judge": str(judge) if judge else None,
        "ground_truth": ground_truth,
        "settings": vars(settings),
        "seed": seed,
        "combinations": result.records,
    }
    csv_path = _write_archive(result, names, description, summary, out, grid)
    return LCOArchive(
        out, len(result.images), csv_path, out / "summary.json", result.records, [c.name for c in members]
    )


def _analyser_params(name: str | None, config: Config) -> dict[str, Any]:
    """The phantom analyser reads the phantom version the generator was trained on (its weights file says)."""
    if name == "phantom" and config.data.name == "phantom":
        return {"version": config.data.params.get("version", 1)}
    return {}


def _classifier(path: str | Path, registry: Registry) -> Classifier:
    from .classification import load_classifier
    from .lco import classifier_name

    model, names, config = load_classifier(Path(path), registry)
    return Classifier(model, names, config.resolution, config.image_channels, classifier_name(Path(path)))


def _write_archive(
    result: Archive, names: list[str], description: str, summary: dict[str, Any], out: Path, grid: str | Path | None
) -> Path:
    """The archive as an image_folder dataset with ``summary.json`` (and the grid); the labels.csv path."""
    import json

    from .checkpoint import atomic_write
    from .export import write_dataset
    from .images import save_grid
    from .kinds import ImageSet

    csv_path = write_dataset(ImageSet(result.images, result.labels, names, description), out, "lco", result.columns)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if grid is not None:
        save_grid(result.images[:64], grid, description)
    return csv_path
