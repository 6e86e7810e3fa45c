"""Seeds derived from integers, so every random stream is a pure function of (seed, what, where)."""

from __future__ import annotations


def mix_seed(*numbers: int) -> int:
    """A 63-bit seed from integers (splitmix-style), so (seed, step) pairs never collide in practice."""
    x = 0x9E3779B97F4A7C15
    for n in numbers:
        x = (x ^ (n & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF
