"""``ganforge evaluate``: FID, KID, precision/recall and MS-SSIM of generated images against real ones."""

from __future__ import annotations

from pathlib import Path

import click

from .. import api
from ..inception import WEIGHTS_ENV
from .audit import audit as audit_command
from .group import (
    comma_list,
    console,
    deprecated,
    main,
    memory_option,
    plugin_option,
    results_table,
    stdout,
    write_json,
)
from .tstr import tstr as tstr_command


@main.command()
@click.option(
    "--weights", type=click.Path(dir_okay=False, path_type=Path), help="generator .safetensors to sample from"
)
@click.option("--fake", type=click.Path(file_okay=False, path_type=Path), help="or: a folder of generated images")
@click.option("--real", type=click.Path(path_type=Path), help="a config (its dataset) or a folder of images")
@click.option(
    "--audit",
    "audit_run",
    metavar="RUN",
    type=click.Path(file_okay=False, path_type=Path),
    help="privacy audit of RUN: its generator vs its training and held-out images (see docs/privacy.md)",
)
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="images per set (0 = the whole real set; with --audit, as many as the training images)",
)
@click.option(
    "--metrics", "metric_names", default="", help="comma-separated, e.g. fid,kid,ms_ssim [config's eval.metrics]"
)
@click.option(
    "--inception-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"safetensors FID Inception weights [${WEIGHTS_ENV}, then the cache]",
)
@click.option("--resolution", type=int, help="image size when neither --weights nor a config gives one")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write every figure here")
@click.option("--pairs", type=click.IntRange(min=1), default=16, hidden=True)  # for the deprecated --audit
@click.option("--space", "spaces", multiple=True, hidden=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), hidden=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--no-cache", is_flag=True, help="recompute the real set's features")
@click.option(
    "--tstr",
    is_flag=True,
    help="train-on-synthetic/test-on-real: --real is a classifier config, "
    "--fake a labelled synthetic set (e.g. from `sample --archive`)",
)
@memory_option
@plugin_option
def evaluate(
    weights,
    fake,
    real,
    audit_run,
    count,
    metric_names,
    inception_weights,
    resolution,
    json_out,
    pairs,
    spaces,
    out,
    seed,
    device,
    no_cache,
    tstr,
    max_memory,
    plugin_modules,
) -> None:
    """Score generated images against real ones: FID, KID, precision/recall, MS-SSIM. (--audit and --tstr are
    deprecated: see `ganforge audit` and `ganforge tstr`.)"""
    if tstr or audit_run is not None:
        _deprecated_alias(click.get_current_context())
        return
    if real is None:
        raise click.UsageError("give exactly one of --real and --audit")
    if (weights is None) == (fake is None):
        raise click.UsageError("give exactly one of --weights and --fake (--audit RUN: at most one)")
    if real.suffix != ".toml" and weights is None and resolution is None:
        raise click.UsageError("--real DIR needs --weights (or --resolution) to know the image size")
    done = api.evaluate(
        real,
        weights=weights,
        fake=fake,
        n=count,
        metrics=comma_list(metric_names),
        inception_weights=inception_weights,
        resolution=resolution,
        seed=seed,
        device=device,
        cache=not no_cache,
        max_memory=max_memory,
        plugins=plugin_modules,
    )
    side = f"{done.resolution}×{done.resolution}"
    stdout().print(results_table(done.results, f"{done.n_fake} generated vs {done.n_real} real, {side}"))
    cached = " (features from cache)" if done.record["real_features_cached"] else ""
    console.print(f"real: {done.record['real']}{cached}")
    if json_out is not None:
        write_json(json_out, done.record)


def _deprecated_alias(ctx: click.Context) -> None:
    """``evaluate --tstr`` and ``evaluate --audit RUN``, for one release: the new commands, with a notice."""
    p = ctx.params
    if p["tstr"]:
        deprecated("evaluate --tstr --real CONFIG --fake DIR", "tstr CONFIG DIR")
        if p["real"] is None or p["fake"] is None:
            raise click.UsageError("--tstr needs --real CLASSIFIER_CONFIG.toml and --fake SYNTHETIC_DIR")
        ctx.invoke(
            tstr_command, classifier_config=p["real"], synthetic=p["fake"], json_out=p["json_out"], device=p["device"]
        )
        return
    if p["real"] is not None:
        raise click.UsageError("give exactly one of --real and --audit")
    if p["weights"] is not None and p["fake"] is not None:
        raise click.UsageError("give exactly one of --weights and --fake (--audit RUN: at most one)")
    deprecated("evaluate --audit RUN", "audit RUN")
    shared = "weights fake count metric_names spaces pairs out json_out seed device inception_weights no_cache"
    ctx.invoke(audit_command, run=p["audit_run"], **{key: p[key] for key in [*shared.split(), "plugin_modules"]})
