"""Shared fixtures: a tiny SAMGAN-shaped config that trains in well under a second per step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ganforge.autotune import CHOICE_ENV
from ganforge.config import load_config
from ganforge.plugins import load_registry

TINY = """
name = "tiny"
seed = 3
augment = ["hflip"]

[data]
name = "phantom"
size = 48

[model]
resolution = 16
image_channels = 1
latent_dim = 16
connection = {{ name = "multi_scale", combine = "lin_cat" }}

[model.generator]
channels = {{ 4 = 16, 8 = 16, 16 = 8 }}
block = "msg"
feature_norm = "pixel"
weight_norms = ["equalized_lr", "spectral"]
attention = {{ name = "{attention}" }}
attention_resolutions = [8, 16]

[model.discriminator]
channels = {{ 4 = 16, 8 = 16, 16 = 8 }}
block = {{ name = "msg", minibatch_std = true, group_size = 4 }}
weight_norms = ["equalized_lr", "spectral"]
attention = {{ name = "{attention}" }}
attention_resolutions = [8]

[loss]
name = "relativistic_hinge"

[optim]
name = "adam"
lr = 0.002

[train]
batch_size = 8
steps = 4
log_every = 1
sample_every = 2
checkpoint_every = 2
grid_size = 4
"""


def write_tiny(folder: Path, attention: str = "self_attention", extra: str = "") -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY.format(attention=attention) + extra)
    return path


_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}
settings.register_profile("default", max_examples=150, derandomize=True, **_FUZZ)
settings.register_profile("explore", max_examples=2000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def fp32_for_auto(request, monkeypatch):
    """``precision = "auto"`` is fp32 in tests and in the processes they start, without timing anything: every
    test's numbers are fp32's and none pays for a measurement. Tests marked ``measures_precision`` measure."""
    if "measures_precision" in request.keywords:
        monkeypatch.delenv(CHOICE_ENV, raising=False)
    else:
        monkeypatch.setenv(CHOICE_ENV, "fp32")


@pytest.fixture
def inception_download_fails(monkeypatch):
    """torch-fidelity's download of the FID Inception weights fails, as on a machine without a network."""
    import urllib.error

    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tfi, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture
def tiny_path(tmp_path: Path) -> Path:
    return write_tiny(tmp_path)


@pytest.fixture
def tiny(tiny_path: Path):
    """(config, registry) of the tiny experiment."""
    return load_config(tiny_path, load_registry)


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory) -> Path:
    """The EMA generator weights of a 2-step tiny run (16×16 grayscale)."""
    from click.testing import CliRunner

    from ganforge.cli import main

    folder = tmp_path_factory.mktemp("tiny_generator")
    args = ["build", str(write_tiny(folder)), "--out", str(folder / "run"), "--steps", "2", "--no-eval"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return folder / "run" / "generator_ema.safetensors"


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """60 labelled 16×16 phantoms as ``ganforge phantom`` writes them (images/ + labels.csv)."""
    from click.testing import CliRunner

    from ganforge.cli import main

    folder = tmp_path_factory.mktemp("phantom") / "real"
    result = CliRunner().invoke(main, ["phantom", "--out", str(folder), "-n", "60", "--resolution", "16"])
    assert result.exit_code == 0, result.output
    return folder


def create_study_args(real: Path, generator: Path, count: int, out: Path, *extra: object) -> list[str]:
    """``ganforge reader-study create`` arguments: ``count`` images from the ``real`` folder and ``generator``."""
    args = ["reader-study", "create", "--real", real, "--weights", generator, "-n", count, "--out", out, *extra]
    return [str(a) for a in args]
