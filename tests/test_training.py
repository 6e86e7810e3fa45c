"""Training, checkpoints, exact resume and sampling on the tiny phantom experiment."""

import json

import pytest
import torch

from ganforge.checkpoint import load_tensors
from ganforge.errors import CheckpointError
from ganforge.plugins import load_registry
from ganforge.rundir import CHECKPOINTS, GENERATOR, GENERATOR_EMA
from ganforge.sampling import generate, latents, load_generator
from ganforge.training import Trainer


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_short_run_moves_weights_and_writes_the_run_directory(tiny, tmp_path):
    config, registry = tiny
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    before = state(trainer.G)
    trainer.fit(4)
    after = trainer.G.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    ema = trainer.G_ema.state_dict()
    key = "stages.8.0.conv1.parametrizations.weight.original"
    assert not torch.equal(ema[key], after[key]) and not torch.equal(ema[key], before[key])  # EMA lags behind
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor([x["loss_d"], x["loss_g"]])).all() for x in lines)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.toml",
        GENERATOR,
        GENERATOR_EMA,
        "discriminator.safetensors",
        CHECKPOINTS,
        "metrics.jsonl",
        "samples",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]  # atomic writes leave no temporaries
    checkpoints = sorted(p.name for p in (tmp_path / "run" / CHECKPOINTS).iterdir())
    assert checkpoints == ["step_0000002.safetensors", "step_0000004.safetensors"]  # keep_checkpoints = 2
    grids = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert grids == ["real.png", "step_0000002.png", "step_0000004.png"]  # the real images, then EMA samples
    _, meta = load_tensors(tmp_path / "run" / GENERATOR)
    assert json.loads(meta["ganforge.config"])["name"] == "tiny" and meta["ganforge.step"] == "4"
    assert "PHANTOM" in meta["ganforge.data"]


def test_ema_is_the_moving_average(tiny, tmp_path):
    config, registry = tiny
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    ema0 = {k: v.clone() for k, v in trainer.G_ema.named_parameters()}
    trainer.train_step()
    decay = config.train.ema_decay
    for name, p in trainer.G.named_parameters():
        expected = decay * ema0[name] + (1 - decay) * p.detach()
        torch.testing.assert_close(dict(trainer.G_ema.named_parameters())[name], expected)


def test_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    config, registry = tiny
    straight = Trainer(config, registry, tmp_path / "straight", device="cpu")
    straight.fit(4)

    first = Trainer(config, registry, tmp_path / "split", device="cpu")
    first.fit(2)
    second = Trainer(config, registry, tmp_path / "split", device="cpu")
    second.resume(tmp_path / "split")
    assert second.step == 2
    second.fit(4)  # --steps 4 on resume is the total: two more steps
    assert second.step == 4
    for a, b in ((straight.G, second.G), (straight.D, second.D), (straight.G_ema, second.G_ema)):
        sa, sb = a.state_dict(), b.state_dict()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_refuses_a_different_model(tiny, tmp_path):
    config, registry = tiny
    Trainer(config, registry, tmp_path / "run", device="cpu").fit(2)
    other = config.model_copy(deep=True)
    other.optim.lr = 0.5
    with pytest.raises(CheckpointError, match="differs from the run's in optim.lr"):
        Trainer(other, registry, tmp_path / "run2", device="cpu").resume(tmp_path / "run")
    with pytest.raises(CheckpointError, match="not a ganforge run directory"):
        Trainer(config, registry, tmp_path / "x", device="cpu").resume(tmp_path / "empty")


def test_weights_round_trip_and_sampling_is_deterministic(tiny, tmp_path):
    config, registry = tiny
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    trainer.fit(2)
    G, loaded_config = load_generator(tmp_path / GENERATOR_EMA, load_registry())
    assert loaded_config.model == config.model
    z = latents(5, 16, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(G(z)[-1], trainer.G_ema(z)[-1], rtol=0, atol=0)
    a = torch.cat(list(generate(G, z, batch_size=2)))
    b = torch.cat(list(generate(G, latents(5, 16, seed=1), batch_size=5)))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == (5, 1, 16, 16)
    assert not torch.equal(a, torch.cat(list(generate(G, latents(5, 16, seed=2)))))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_generator(tmp_path / "nope.safetensors", load_registry())
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_generator(tmp_path / "junk.safetensors", load_registry())


@pytest.mark.parametrize("loss, optim", [("wgan_gp", "rmsprop"), ("hinge", "adam"), ("non_saturating", "adam")])
def test_other_losses_and_optimizers_train(tmp_path, loss, optim):
    from conftest import write_tiny

    from ganforge.config import load_config

    config, registry = load_config(
        write_tiny(tmp_path), load_registry, [f"loss.name={loss}", f"optim={{name = '{optim}', lr = 0.001}}"]
    )
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    losses = [trainer.train_step() for _ in range(2)]
    assert torch.isfinite(torch.tensor(losses)).all()


def test_ema_warmup_ramps_the_decay(tiny, tmp_path):
    config, registry = tiny
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    assert trainer.ema_decay(0) == trainer.ema_decay(10**6) == 0.999
    config.train.ema_warmup = True
    assert trainer.ema_decay(0) == pytest.approx(0.1)
    assert trainer.ema_decay(90) == pytest.approx(91 / 100)
    assert trainer.ema_decay(10**6) == 0.999


def test_ema_of_a_network_without_buffers():
    """MSG-GAN has no spectral norm, so no buffers: the EMA update must not need any."""
    from torch import nn

    from ganforge.training import update_ema

    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    expected = 0.9 * ema.weight.detach() + 0.1 * model.weight.detach()
    update_ema(ema, model, 0.9)
    torch.testing.assert_close(ema.weight.detach(), expected)
