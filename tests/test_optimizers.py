"""The optimizers compute Adam's and RMSprop's published updates, on the fast multi-tensor path."""

from __future__ import annotations

import pytest
import torch

from ganforge.plugins import load_registry


def _run(optimizer_of, shapes, gradients) -> list[torch.Tensor]:
    params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    optimizer = optimizer_of(params)
    for step in gradients:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach() for p in params]


@pytest.fixture
def case():
    generator = torch.Generator().manual_seed(0)
    shapes = [(8, 4, 3, 3), (8,), (1,)]
    return shapes, [[torch.randn(s, generator=generator) for s in shapes] for _ in range(4)]


def _adam_by_hand(gradients, lr, beta1, beta2, eps) -> list[torch.Tensor]:
    """Kingma & Ba (2015), Algorithm 1, in float64."""
    first = [torch.zeros_like(g, dtype=torch.float64) for g in gradients[0]]
    second = [torch.zeros_like(m) for m in first]
    params = [torch.zeros_like(m) for m in first]
    for t, step in enumerate(gradients, start=1):
        for i, g in enumerate(step):
            g = g.double()
            first[i] = beta1 * first[i] + (1 - beta1) * g
            second[i] = beta2 * second[i] + (1 - beta2) * g * g
            m_hat, v_hat = first[i] / (1 - beta1**t), second[i] / (1 - beta2**t)
            params[i] = params[i] - lr * m_hat / (v_hat.sqrt() + eps)
    return params


@pytest.mark.parametrize("fused", [False, True])
def test_adam_is_kingma_and_ba(case, fused):
    shapes, gradients = case
    registry = load_registry()
    params = {"lr": 0.01, "betas": [0.5, 0.99], "fused": fused}
    got = _run(lambda ps: registry.build("optimizer", "adam", params, parameters=ps), shapes, gradients)
    expected = _adam_by_hand(gradients, 0.01, 0.5, 0.99, 1e-8)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-7)


def test_the_default_adam_is_bitwise_the_per_tensor_path(case):
    shapes, gradients = case
    registry, built = load_registry(), []

    def default(params):
        built.append(registry.build("optimizer", "adam", {}, parameters=params))
        return built[-1]

    got = _run(default, shapes, gradients)
    reference = _run(lambda ps: torch.optim.Adam(ps, lr=0.001, betas=(0.0, 0.99), foreach=False), shapes, gradients)
    assert built[0].defaults["foreach"] and not built[0].defaults["fused"]
    assert all(torch.equal(g, r) for g, r in zip(got, reference, strict=True))


def test_rmsprop_is_tieleman_and_hinton(case):
    shapes, gradients = case
    got = _run(lambda ps: load_registry().build("optimizer", "rmsprop", {"lr": 0.01}, parameters=ps), shapes, gradients)
    squares = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    expected = [torch.zeros_like(v) for v in squares]
    for step in gradients:
        for i, g in enumerate(step):
            squares[i] = 0.99 * squares[i] + 0.01 * g.double() ** 2
            expected[i] = expected[i] - 0.01 * g.double() / (squares[i].sqrt() + 1e-8)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-7)
