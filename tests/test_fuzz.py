"""Property-based tests: the config loader, ``--set`` parsing and the weights loader on random and
mutated input never raise anything but ganforge's documented errors (one line at the CLI).

CI runs a fixed set of examples (the ``default`` profile in conftest.py, derandomized, so a run
cannot fail on an input no earlier run tried); ``HYPOTHESIS_PROFILE=explore pytest tests/test_fuzz.py``
searches 2,000 fresh random examples per test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import TINY
from hypothesis import given
from hypothesis import strategies as st

from ganforge.checkpoint import load_tensors, save_tensors
from ganforge.config import apply_overrides, load_config, parse_override, validate_config
from ganforge.errors import GanforgeError
from ganforge.plugins import load_registry
from ganforge.sampling import load_generator
from ganforge.training import Trainer

REGISTRY = load_registry()
TINY_TEXT = TINY.format(attention="self_attention")


def registry_for(modules):
    """Never import what random text names as plugins (``antigravity`` opens a browser)."""
    return REGISTRY


def documented_or_fine(call) -> None:
    try:
        call()
    except GanforgeError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` with a few characters replaced, deleted or inserted."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(chars) - 1)))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        new = draw(st.sampled_from(list('="[]{}.,#\n 0123456789-e+abcinf')))
        if action == "replace" and chars:
            chars[at] = new
        elif action == "delete" and chars:
            del chars[at]
        else:
            chars.insert(at, new)
    return "".join(chars)


@given(text=st.one_of(st.text(max_size=300), mutated(TINY_TEXT)))
def test_config_loader_raises_only_documented_errors(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    documented_or_fine(lambda: load_config(path, registry_for))


@given(data=st.binary(max_size=200))
def test_config_loader_on_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "bytes.toml"
    path.write_bytes(data)
    documented_or_fine(lambda: load_config(path, registry_for))


@given(
    key=st.one_of(st.text(max_size=30), st.sampled_from(["optim.lr", "train.batch_size", "model.generator.attention"])),
    value=st.one_of(st.text(max_size=30), st.sampled_from(["inf", "nan", "[1.5, 0.99]", '{ name = "x" }', "-1"])),
)
def test_set_overrides_raise_only_documented_errors(key, value):
    import tomllib

    base = tomllib.loads(TINY_TEXT)

    def apply():
        parse_override(f"{key}={value}")
        validate_config(apply_overrides(base, [f"{key}={value}"]), REGISTRY)

    documented_or_fine(apply)


@pytest.fixture(scope="module")
def weights_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("weights")
    (folder / "tiny.toml").write_text(TINY_TEXT)
    config, registry = load_config(folder / "tiny.toml", load_registry)
    Trainer(config, registry, folder / "run", device="cpu").fit(1)
    return (folder / "run" / "generator_ema.safetensors").read_bytes()


@given(data=st.data())
def test_weights_loader_on_mutated_files_raises_only_documented_errors(tmp_path_factory, weights_bytes, data):
    blob = bytearray(weights_bytes)
    header_end = 8 + struct.unpack("<Q", weights_bytes[:8])[0]
    mode = data.draw(st.sampled_from(["flip", "flip header", "truncate", "random"]))
    if mode == "flip":
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] ^= data.draw(st.integers(1, 255))
    elif mode == "flip header":
        at = data.draw(st.integers(0, header_end - 1))
        blob[at] = data.draw(st.integers(0, 255))
    elif mode == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob = bytearray(data.draw(st.binary(max_size=300)))
    path = tmp_path_factory.mktemp("w") / "fuzzed.safetensors"
    path.write_bytes(bytes(blob))
    documented_or_fine(lambda: load_generator(path, REGISTRY))


def _json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    )


@given(data=st.data())
def test_weights_loader_on_crafted_metadata_raises_only_documented_errors(tmp_path_factory, weights_bytes, data):
    """Valid files (right checksum) whose metadata an attacker wrote: configs of any shape and size."""
    folder = tmp_path_factory.mktemp("m")
    (folder / "src.safetensors").write_bytes(weights_bytes)
    tensors, meta = load_tensors(folder / "src.safetensors")
    config = json.loads(meta["ganforge.config"])
    target = data.draw(st.sampled_from(["model", "model.generator", "model.generator.channels", "plugins", "root"]))
    node = config
    for part in target.split(".")[:-1] if target != "root" else []:
        node = node[part]
    leaf = target.split(".")[-1]
    if target == "root":
        config = data.draw(_json_values())
    else:
        node[leaf] = data.draw(_json_values())
    kept = {k: v for k, v in meta.items() if k not in ("format", "ganforge.checksum", "ganforge.config")}
    save_tensors(folder / "crafted.safetensors", tensors, {**kept, "ganforge.config": config})
    documented_or_fine(lambda: load_generator(folder / "crafted.safetensors", REGISTRY))


def test_a_crafted_generator_with_sane_metadata_still_loads(tmp_path, weights_bytes):
    """The control for the two tests above: an unmodified file loads and generates."""
    (tmp_path / "g.safetensors").write_bytes(weights_bytes)
    generator, config = load_generator(Path(tmp_path / "g.safetensors"), REGISTRY)
    assert generator(torch.zeros(2, config.model.latent_dim))[-1].shape == (2, 1, 16, 16)


def test_a_key_with_a_newline_is_shown_on_one_line():
    """Found by the fuzzer above: ``--set $'0\\n0=inf'`` printed a two-line error."""
    import tomllib

    with pytest.raises(GanforgeError) as caught:
        validate_config(apply_overrides(tomllib.loads(TINY_TEXT), ["0\n0=inf"]), REGISTRY)
    assert str(caught.value) == "'0\\n0': must be a finite number (inf and nan are not allowed)"
