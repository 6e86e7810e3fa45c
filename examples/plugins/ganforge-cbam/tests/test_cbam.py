import pytest
import torch
from ganforge_cbam import CBAM

from ganforge.layers import Layers


def cbam(channels=16, **kw):
    torch.manual_seed(0)
    params = {"reduction": 4, "kernel_size": 7, "residual": True} | kw
    return CBAM(channels=channels, layers=Layers(), **params)


def test_identity_at_init_and_shape():
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(cbam()(x), x)


def test_gates_against_explicit_computation():
    layer = cbam(residual=False)
    x = torch.randn(3, 16, 5, 6)
    mlp = lambda v: layer.mlp[2](torch.relu(layer.mlp[0](v)))  # noqa: E731
    channel = torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    y = x * channel
    spatial = torch.sigmoid(layer.spatial(torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], 1)))
    torch.testing.assert_close(layer(x), y * spatial)
    assert layer(x).shape == x.shape


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="must be odd"):
        cbam(kernel_size=4)
