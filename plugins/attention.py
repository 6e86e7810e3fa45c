"""SAGAN self-attention (Zhang et al. 2019; SAMGAN paper Eq. 3-5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.layers import Layers


class SelfAttentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction: int = Field(8, ge=1, description="query/key (f, g) width = C / reduction (paper: k = 8)")
    value_reduction: int = Field(8, ge=1, description="value (h) width = C / value_reduction; v maps it back to C")
    pool: int = Field(
        1,
        ge=1,
        description="keys and values max-pooled pool×pool (BigGAN: 2), N/pool² of them for N queries; "
        "1: every position (SAGAN, the paper)",
    )


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``y = γ·v(Σ_i softmax_i(f(x_i)ᵀ g(x_j)) h(x_i)) + x``, γ starts at 0.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``; N = H·W positions attend to each other. There is no
    1/√d scaling in SAGAN, so ``scaled_dot_product_attention`` runs with ``scale=1``. With ``pool = p``
    each query attends to the N/p² max-pooled keys and values (BigGAN's variant): the N² softmax, which
    dominates the cost at head widths of 2-64, shrinks p²-fold. H and W must be multiples of p.
    """

    def __init__(self, *, channels: int, layers: Layers, reduction: int, value_reduction: int, pool: int):
        super().__init__()
        self.pool = pool
        inner = max(1, channels // reduction)
        values = max(1, channels // value_reduction)
        self.f = layers.conv(channels, inner, 1)  # keys
        self.g = layers.conv(channels, inner, 1)  # queries
        self.h = layers.conv(channels, values, 1)  # values
        self.v = layers.conv(values, channels, 1)  # output projection
        self.gamma = nn.Parameter(torch.zeros(1))

    def _tokens(self, conv: nn.Module, x: torch.Tensor, pool: int = 1) -> torch.Tensor:
        features = conv(x)
        if pool > 1:
            if x.shape[-1] % pool or x.shape[-2] % pool:
                raise ValueError(
                    f"self_attention.pool = {pool} needs H and W divisible by it, not {tuple(x.shape[-2:])}"
                )
            features = F.max_pool2d(features, pool)
        return features.flatten(2).transpose(1, 2).contiguous()  # [B, N, d]; fused SDPA kernels need stride 1 on d

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention matrix β, ``[B, N, N / pool²]``; row j (a query position) sums to 1. For inspection."""
        s = self._tokens(self.g, x) @ self._tokens(self.f, x, self.pool).transpose(1, 2)
        return s.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        q = self._tokens(self.g, x).unsqueeze(1)
        k, v = (self._tokens(conv, x, self.pool).unsqueeze(1) for conv in (self.f, self.h))
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0).squeeze(1)  # [B, N, d_v]
        o = self.v(o.transpose(1, 2).reshape(B, -1, H, W))
        return x + self.gamma * o


@hookimpl
def ganforge_register(registry):
    registry.register("attention", "self_attention", SelfAttention, SelfAttentionParams)
