"""Classifiers, AUROC, `ganforge classify train`, and latent class optimisation mechanics."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ganforge.classification import auroc, load_classifier
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.holdout import holdout_split
from ganforge.lco import Classifier, LCOSettings, optimise_latents, parse_labels
from ganforge.plugins import load_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def brute_force_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_against_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    ours = auroc(torch.tensor(scores), torch.tensor(labels))
    assert ours == pytest.approx(brute_force_auroc(scores, labels), abs=1e-12)
    assert auroc(torch.tensor([0.1, 0.9]), torch.tensor([0, 1])) == 1.0
    assert math.isnan(auroc(torch.tensor([0.1, 0.9]), torch.tensor([1, 1])))


def test_holdout_split_is_disjoint_and_seeded():
    train, test = holdout_split(100, 0.2, seed=3)
    assert len(test) == 20 and len(train) == 80 and not set(train.tolist()) & set(test.tolist())
    assert torch.equal(holdout_split(100, 0.2, seed=3)[1], test)


def test_classifier_components_shapes(registry):
    for name, params in (("small_cnn", {"width": 4}), ("densenet121", {})):
        for channels in (1, 3):
            model = registry.build("classifier", name, params, image_channels=channels, num_classes=5)
            assert model(torch.randn(2, channels, 64, 64)).shape == (2, 5)


def test_parse_archive():
    from ganforge.lco import parse_archive

    assert parse_archive("Effusion=50, Nodule|Effusion=20") == [("Effusion", 50), ("Nodule|Effusion", 20)]
    with pytest.raises(GanforgeError, match="expected COMBINATION=COUNT"):
        parse_archive("Effusion")
    with pytest.raises(GanforgeError, match="expected COMBINATION=COUNT"):
        parse_archive("Effusion=0")


def test_parse_labels():
    names = ["Cardiomegaly", "Effusion", "Nodule"]
    assert parse_labels("Effusion|Nodule", names).tolist() == [0, 1, 1]
    assert parse_labels("No Finding", names).tolist() == [0, 0, 0]
    with pytest.raises(GanforgeError, match="unknown finding.*'Efusion'.*knows Cardiomegaly, Effusion, Nodule"):
        parse_labels("Efusion", names)


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls")
    result = CliRunner().invoke(
        main,
        [
            "classify",
            "train",
            str(EXAMPLES / "classifier.toml"),
            "--out",
            str(out),
            "--set",
            "resolution=32",
            "--set",
            "data.size=1200",
            "--set",
            "train.epochs=3",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_classify_train_reports_auroc_above_chance(trained_classifier):
    import json

    report = json.loads((trained_classifier / "auroc.json").read_text())
    per_class = report["per_class"]
    assert sum(v > 0.75 for v in per_class.values() if v is not None) >= 2
    model, names, config = load_classifier(trained_classifier / "classifier.safetensors", load_registry())
    assert names == ["Cardiomegaly", "Effusion", "Lung_Opacity", "Nodule"] and config.resolution == 32


class Brightness(torch.nn.Module):
    """A transparent 'classifier': finding k is present when region k of the image is bright."""

    def forward(self, x):
        quarters = [x[:, :, :8, :8], x[:, :, :8, 8:], x[:, :, 8:, :8], x[:, :, 8:, 8:]]
        return torch.stack([8 * q.mean((1, 2, 3)) for q in quarters], dim=1)


class Painter(torch.nn.Module):
    """A transparent 'generator': z's first four entries set the brightness of four quadrants."""

    def forward(self, z):
        levels = torch.tanh(z[:, :4])
        image = levels.view(-1, 2, 2).repeat_interleave(8, 1).repeat_interleave(8, 2)
        return [image.unsqueeze(1)]


def test_lco_raises_the_requested_probability_and_accepts_exactly():
    names = ["A", "B", "C", "D"]
    target = parse_labels("A|D", names)
    result = optimise_latents(
        Painter(),
        [Classifier(Brightness(), names, 16, 1, "brightness")],
        target,
        n=12,
        latent_dim=8,
        settings=LCOSettings(steps=300, lr=0.1, batch_size=8, views=1, pool=1),  # random starts: the optimiser alone
        seed=0,
        device=torch.device("cpu"),
    )
    assert result.probability_trace[-1] > result.probability_trace[0] + 0.2
    assert len(result.images) == 12 and result.tried >= 12 and 0 < result.acceptance <= 1
    probs = torch.sigmoid(Brightness()(result.images.float() / 127.5 - 1))
    assert bool(((probs[:, [0, 3]] >= 0.5).all(1) & (probs[:, [1, 2]] < 0.5).all(1)).all())


@pytest.mark.slow
def test_tstr_table_has_three_rows(tmp_path, monkeypatch):
    import json

    from ganforge_plugins.phantom import phantom

    from ganforge.export import write_dataset

    config = tmp_path / "classifier.toml"
    text = (EXAMPLES / "classifier.toml").read_text()
    for old, new in [
        ("resolution = 64", "resolution = 32"),
        ("size = 3000", "size = 600"),
        ("epochs = 8", "epochs = 2"),
    ]:
        assert old in text, old  # the example changed: keep this test small
        text = text.replace(old, new)
    config.write_text(text)
    synthetic = phantom(size=200, seed=9, prevalence=0.3, resolution=32, image_channels=1)
    write_dataset(synthetic, tmp_path / "synthetic", prefix="syn")
    monkeypatch.chdir(tmp_path)  # --fake as a relative path: labels.csv was once looked for at a doubled one
    result = CliRunner().invoke(main, ["tstr", str(config), "synthetic", "--json", str(tmp_path / "tstr.json")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "tstr.json").read_text())
    assert set(record) == {"real", "synthetic", "real + synthetic", "synthetic_data"}
    for row in ("real", "synthetic", "real + synthetic"):
        values = [v for v in record[row]["per_class"].values() if v is not None]
        assert len(values) == 4 and all(0 <= v <= 1 for v in values)
        assert 0 <= record[row]["mean"] <= 1
    assert "real + synthetic" in result.output and "synthetic/images" in record["synthetic_data"]


QUADRANT_PLUGIN = '''
import torch
from torch import nn

from ganforge import hookimpl


class QuadrantBrightness(nn.Module):
    """Finding k is 'present' when quadrant k of the image is bright (a transparent classifier)."""

    def __init__(self, *, image_channels, num_classes):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        quarters = [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]
        return torch.stack([self.scale * q.mean((1, 2, 3)) for q in quarters], dim=1)


@hookimpl
def ganforge_register(registry):
    registry.register("classifier", "quadrant_brightness", QuadrantBrightness)
'''


def _quadrant_setup(tmp_path, monkeypatch):
    """A (barely) trained phantom generator and the transparent quadrant classifier, as files."""
    from conftest import write_tiny

    from ganforge.classification import ClassifierRun, save_classifier
    from ganforge.config import ClassifierConfig, load_config, validate_config
    from ganforge.training import Trainer

    (tmp_path / "quadrant_plugin.py").write_text(QUADRANT_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    config, registry = load_config(write_tiny(tmp_path), load_registry)
    Trainer(config, registry, tmp_path / "gan", device="cpu").fit(2)

    registry = load_registry(["quadrant_plugin"])
    raw = {
        "plugins": ["quadrant_plugin"],
        "resolution": 16,
        "data": {"name": "phantom"},
        "classifier": {"name": "quadrant_brightness"},
    }
    cconfig = validate_config(raw, registry, None, ClassifierConfig)
    model = registry.build("classifier", "quadrant_brightness", image_channels=1, num_classes=4)
    save_classifier(tmp_path / "c.safetensors", ClassifierRun(model, QUADRANTS, {}, 0, 0), cconfig, registry)
    base = ["lco", "--weights", str(tmp_path / "gan" / "generator.safetensors")]
    base += ["--classifier", str(tmp_path / "c.safetensors"), "--out", str(tmp_path / "lco")]
    return model, base + ["--plugin", "quadrant_plugin"]  # the classifier file names it, but files never import


QUADRANTS = ["TopLeft", "TopRight", "BottomLeft", "BottomRight"]


@pytest.mark.slow
def test_lco_through_the_cli_writes_the_requested_labels(tmp_path, monkeypatch):
    model, command = _quadrant_setup(tmp_path, monkeypatch)
    options = ["--archive", "TopLeft|BottomRight=3,No Finding=2", "--lr", "0.2", "--steps", "300"]
    options += ["--batch-size", "8", "--pool", "3", "--judge", str(tmp_path / "c.safetensors")]
    result = CliRunner().invoke(main, command + options)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "lco" / "labels.csv").open()))
    assert [r["Finding Labels"] for r in rows] == ["TopLeft|BottomRight"] * 3 + ["No Finding"] * 2
    assert "acceptance" in result.output
    from ganforge_plugins.image_folder import image_folder

    back = image_folder(
        root=str(tmp_path / "lco"), labels_csv="labels.csv", classes=QUADRANTS, resolution=16, image_channels=1
    )
    probs = torch.sigmoid(model(back.images.float() / 127.5 - 1)).detach()
    assert bool(((probs >= 0.5) == back.labels.bool()).all())  # the written images carry their labels

    # The summary's figures are those of the written images, recomputed here.
    summary = json.loads((tmp_path / "lco" / "summary.json").read_text())
    first, second = summary["combinations"]
    assert (first["accepted"], second["accepted"]) == (3, 2)
    assert first["acceptance"] == pytest.approx(3 / first["tried"])
    assert first["drawn"] == 3 * first["tried"] and summary["settings"]["pool"] == 3
    assert first["classifiers"]["c.safetensors"]["TopLeft"] == pytest.approx(probs[:3, 0].mean().item(), abs=1e-6)
    assert first["judge"]["probability"]["BottomRight"] == pytest.approx(probs[:3, 3].mean().item(), abs=1e-6)
    no_finding = (1 - probs[3:].max(1).values).mean().item()
    assert second["classifiers"]["c.safetensors"]["No Finding"] == pytest.approx(no_finding, abs=1e-6)
    assert first["judge"]["exact"] == second["judge"]["exact"] == 1.0
    assert [float(r["P(TopRight)"]) for r in rows] == pytest.approx(probs[:, 1].tolist(), abs=1e-5)
    steps = [int(r["LCO Steps"]) for r in rows]
    assert all(0 <= k <= 300 for k in steps) and first["mean_steps"] == pytest.approx(sum(steps[:3]) / 3)


@pytest.mark.slow
def test_lco_with_nothing_accepted_exits_2_with_advice_and_writes_nothing(tmp_path, monkeypatch):
    _, command = _quadrant_setup(tmp_path, monkeypatch)
    command = ["sample", *command[1:]]  # the deprecated spelling, with its own option names, still works
    options = ["--labels", "TopLeft", "-n", "2", "--threshold", "1.0", "--lco-steps", "3", "--max-tries", "4"]
    result = CliRunner().invoke(main, command + options)
    assert result.exit_code == 2, result.output
    assert "`ganforge sample --classifier …` is deprecated" in " ".join(result.output.split())
    assert "no latent was accepted (4 tried, 3 steps each, threshold 1.0)" in result.output
    assert "--steps" in result.output and "generator" in result.output
    assert not (tmp_path / "lco").exists()


def test_evaluate_tstr_is_a_deprecated_spelling_of_tstr(tmp_path, monkeypatch):
    import ganforge.api

    calls = []

    def fake_tstr(config, synthetic, *, device):
        calls.append((config, synthetic, device))
        return ganforge.api.TSTRResult({"real": {"A": 0.75}, "synthetic": {"A": 0.5}}, "SYN")

    monkeypatch.setattr(ganforge.api, "tstr", fake_tstr)
    config, synthetic = tmp_path / "c.toml", tmp_path / "syn"
    args = ["evaluate", "--tstr", "--real", str(config), "--fake", str(synthetic), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "`ganforge evaluate --tstr --real CONFIG --fake DIR` is deprecated" in " ".join(result.output.split())
    assert calls == [(config, synthetic, "cpu")] and "0.750" in result.output
