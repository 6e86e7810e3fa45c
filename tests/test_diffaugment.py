"""DiffAugment, ADA and R1 against their papers' definitions, and in training (switchable, exact resume)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from ganforge_plugins.diffaugment import ADA, DiffAugment, translation_theta, warp
from ganforge_plugins.losses import R1

from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.training import Trainer


def pyramid(x: torch.Tensor, sizes=(4, 8, 16)) -> list[torch.Tensor]:
    return [F.adaptive_avg_pool2d(x, s) for s in sizes]


def paper_translation(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Zhao et al.'s ``rand_translation`` for given shifts: out[i, j] = x[i + ty, j + tx], zeros outside."""
    _, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    out = torch.empty_like(x)
    for b in range(len(x)):
        rows = (torch.arange(h) + t[b, 1] + 1).clamp(0, h + 1)
        cols = (torch.arange(w) + t[b, 0] + 1).clamp(0, w + 1)
        out[b] = padded[b][:, rows][:, :, cols]
    return out


def paper_cutout(x: torch.Tensor, offset: torch.Tensor, cut: int) -> torch.Tensor:
    """Zhao et al.'s ``rand_cutout`` for given offsets: a cut × cut square from offset - cut // 2, clamped."""
    _, _, h, w = x.shape
    mask = torch.ones(len(x), h, w)
    for b in range(len(x)):
        rows = (torch.arange(cut) + offset[b, 1] - cut // 2).clamp(0, h - 1)
        cols = (torch.arange(cut) + offset[b, 0] - cut // 2).clamp(0, w - 1)
        mask[b][rows[:, None], cols[None, :]] = 0
    return x * mask[:, None]


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 16, 16, generator=g) * 2 - 1


def test_translation_at_the_finest_scale_is_the_papers(images):
    augment = DiffAugment(policy=["translation"], translation=0.125, cutout=0.5)
    torch.manual_seed(5)
    out = augment(pyramid(images))
    torch.manual_seed(5)
    pixels = torch.randint(-2, 3, (6, 2))  # int(16 × 0.125 + 0.5) = 2
    torch.testing.assert_close(out[-1], paper_translation(images, -pixels), rtol=0, atol=1e-5)  # grid_sample rounding
    assert (pixels != 0).any()


def test_a_translation_is_the_same_at_every_scale(images):
    """4 px at 16² is 2 px at 8² and 1 px at 4²: the coarse outputs are the pooled fine output."""
    shift = torch.tensor([[4.0, -8.0], [-4.0, 4.0]]) / 16
    out = warp(pyramid(images[:2]), translation_theta(shift), "zeros")
    for x in out[:-1]:
        torch.testing.assert_close(x, F.adaptive_avg_pool2d(out[-1], x.shape[-1]), rtol=0, atol=1e-5)


def test_cutout_at_the_finest_scale_is_the_papers(images):
    augment = DiffAugment(policy=["cutout"], translation=0.125, cutout=0.5)
    torch.manual_seed(9)
    out = augment(pyramid(images))
    torch.manual_seed(9)
    offset = torch.randint(0, 16 + 1, (6, 2))  # cut = 8: offsets in [0, 17)
    torch.testing.assert_close(out[-1], paper_cutout(images, offset, 8), rtol=0, atol=0)
    assert ((out[-1] == 0).float().mean(dim=(1, 2, 3)) > 0).all()  # every image lost a square (≥ 1/4 of it)
    coarse = (out[0] == 0).float().mean()
    assert 0.05 < coarse < 0.35  # the same squares, at 4×4


def test_colour_is_the_papers_formulas(images):
    rgb = images.repeat(1, 3, 1, 1) + 0.1 * torch.arange(3.0).view(1, 3, 1, 1)
    augment = DiffAugment(policy=["color"], translation=0.125, cutout=0.5)
    torch.manual_seed(2)
    out = augment([rgb])[0]
    torch.manual_seed(2)
    brightness, saturation, contrast = torch.rand(6, 1, 1, 1) - 0.5, torch.rand(6, 1, 1, 1) * 2, torch.rand(6, 1, 1, 1)
    x = rgb + brightness
    x = (x - x.mean(1, keepdim=True)) * saturation + x.mean(1, keepdim=True)
    x = (x - x.mean((1, 2, 3), keepdim=True)) * (contrast + 0.5) + x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, x)


def test_gradients_flow_through_every_transform(images):
    augment = DiffAugment(policy=["color", "translation", "cutout"], translation=0.125, cutout=0.5)
    fake = [x.clone().requires_grad_(True) for x in pyramid(images)]
    sum(x.sum() for x in augment(fake)).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in fake)


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match=r"unknown \['blur'\]"):
        DiffAugment(policy=["blur"], translation=0.125, cutout=0.5)


IGNORED = torch.full((4,), 5.0)  # generated images' scores: the paper's heuristic does not look at them


def test_ada_probability_follows_the_overfitting_heuristic(images):
    ada = ADA(target=0.6, interval=2, speed_images=100, p=0.0, max_p=0.5, heuristic="sign")
    assert ada(pyramid(images))[-1] is not None and torch.equal(ada(pyramid(images))[-1], pyramid(images)[-1])
    ada.feedback(
        torch.tensor([1.0, 1.0, 1.0, -1.0]), IGNORED
    )  # r_t = 0.5 so far; no adjustment before `interval` steps
    assert float(ada.p) == 0.0 and ada.r_t == 0.5
    ada.feedback(torch.tensor([1.0, 1.0, 1.0, 1.0]), IGNORED)  # r_t = 0.75 > 0.6 over 8 images: p += 8 / 100
    assert float(ada.p) == pytest.approx(0.08)
    assert ada.figures() == {"ada_p": 0.08, "ada_r_t": 0.75}  # logged with the losses
    for _ in range(40):
        ada.feedback(torch.ones(4), IGNORED)
    assert float(ada.p) == 0.5  # max_p
    for _ in range(40):
        ada.feedback(-torch.ones(4), IGNORED)  # r_t = -1 < 0.6: p falls to 0 and stays there
    assert float(ada.p) == 0.0
    copy = ADA(target=0.6, interval=2, speed_images=100, p=0.0, max_p=0.5, heuristic="sign")
    ada.feedback(torch.ones(4), IGNORED)
    copy.load_state_dict(ada.state_dict())
    assert ada.r_t == copy.r_t == 1.0 and int(copy.steps) == int(ada.steps)


def test_the_relative_heuristic_reads_relativistic_scores():
    """A relativistic D can score every real image below 0 while separating them from the fakes."""
    real, fake = -torch.ones(4), -3 * torch.ones(4)
    paper, relative = (
        ADA(target=0.6, interval=1, speed_images=100, p=0.0, max_p=1.0, heuristic=h) for h in ("sign", "relative")
    )
    for ada in (paper, relative):
        ada.feedback(real, fake)
    assert float(paper.p) == 0.0 and paper.figures()["ada_r_t"] == -1.0
    assert float(relative.p) == pytest.approx(0.04) and relative.figures()["ada_r_t"] == 1.0


def test_ada_at_full_probability_transforms_every_image_alike_at_every_scale():
    smooth = F.interpolate(torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)), 16, mode="bilinear")
    ada = ADA(target=0.6, interval=4, speed_images=100, p=1.0, max_p=1.0, heuristic="sign")
    torch.manual_seed(0)
    out = ada(pyramid(smooth))
    assert all((o - i).abs().mean(dim=(1, 2, 3)).min() > 0.01 for o, i in zip(out, pyramid(smooth)))
    pooled = F.adaptive_avg_pool2d(out[-1], 4)  # bilinear resampling is not pooling: close, not equal
    assert (pooled - out[0]).abs().mean() < 0.2 * (out[0] - pyramid(smooth)[0]).abs().mean()


def test_r1_is_half_gamma_times_the_squared_gradient_norm():
    x = torch.randn(5, 1, 8, 8)

    def score(images: torch.Tensor) -> torch.Tensor:  # ∇ = 2x per sample
        return images.pow(2).sum(dim=(1, 2, 3))

    penalty = R1(gamma=3.0, every=4)(score, x, x)
    assert float(penalty.detach()) == pytest.approx(1.5 * float((2 * x).pow(2).sum(dim=(1, 2, 3)).mean()), rel=1e-6)
    assert penalty.requires_grad  # built with create_graph: D's parameters get its gradient


@pytest.fixture
def augmented(tiny_path):
    def build(*overrides: str):
        return load_config(tiny_path, load_registry, list(overrides))

    return build


def test_r1_is_lazy_and_scaled_by_its_interval(augmented, tmp_path):
    plain, _ = augmented()
    lazy, registry = augmented("regularize=[{ name = 'r1', gamma = 50.0, every = 2 }]")

    def after_one_step(config, start: int, name: str) -> dict[str, torch.Tensor]:
        trainer = Trainer(config, registry, tmp_path / name, device="cpu")
        trainer.step = start
        trainer.train_step()
        return trainer.D.state_dict()

    for start, due in ((0, True), (1, False)):
        a, b = after_one_step(plain, start, f"plain{start}"), after_one_step(lazy, start, f"lazy{start}")
        same = all(torch.equal(a[k], b[k]) for k in a)
        assert same is not due, f"step {start}"


def test_diffaugment_changes_what_d_sees_in_both_steps(augmented, tmp_path):
    plain, registry = augmented()
    config, _ = augmented("d_augment=['diffaugment']")
    trainers = [Trainer(c, registry, tmp_path / name, device="cpu") for c, name in ((plain, "a"), (config, "b"))]
    for trainer in trainers:
        trainer.train_step()
    d = [t.D.state_dict() for t in trainers]
    g = [t.G.state_dict() for t in trainers]
    assert any(not torch.equal(d[0][k], d[1][k]) for k in d[0])
    assert any(not torch.equal(g[0][k], g[1][k]) for k in g[0])


def test_ada_state_is_in_checkpoints_and_resume_is_exact(augmented, tmp_path):
    config, registry = augmented("d_augment=[{ name = 'ada', interval = 1, speed_images = 40, p = 0.2 }]")
    straight = Trainer(config, registry, tmp_path / "straight", device="cpu")
    straight.fit(4, evaluate=False)
    first = Trainer(config, registry, tmp_path / "split", device="cpu")
    first.fit(2, evaluate=False)
    second = Trainer(config, registry, tmp_path / "split", device="cpu")
    second.resume(tmp_path / "split")
    assert float(second.d_augment[0].p) == float(first.d_augment[0].p) != 0.2  # it moved and was restored
    second.fit(4, evaluate=False)
    assert float(second.d_augment[0].p) == float(straight.d_augment[0].p)
    logged = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["ada_p"] for r in logged if "ada_p" in r][-1] == round(float(straight.d_augment[0].p), 4)
    for a, b in ((straight.D, second.D), (straight.G, second.G)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
