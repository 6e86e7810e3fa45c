"""The saad2022 protocol against direct transcriptions of the authors' tools (scipy, torchvision)."""

import numpy as np
import pytest
import torch
from ganforge_plugins.phantom import render_phantoms
from ganforge_plugins.saad2022 import SaadFID, SaadMSSSIM, sewar_ms_ssim
from scipy import signal
from scipy.ndimage import uniform_filter

from ganforge.errors import GanforgeError
from ganforge.evaluation import EvalContext


def sewar_msssim_numpy(gt: np.ndarray, p: np.ndarray) -> float:
    """sewar's msssim on HxWxC arrays, written with the scipy calls it makes."""
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    x, y = np.mgrid[-5:6, -5:6]
    win = np.exp(-(x**2 + y**2) / (2 * 1.5**2))
    win /= win.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    gt, p = gt.astype(np.float64), p.astype(np.float64)
    ssims, css = [], []
    for _ in weights:
        per = []
        for c in range(gt.shape[2]):
            f = lambda im: signal.convolve2d(im, np.rot90(win, 2), mode="valid")  # noqa: E731
            a, b = gt[:, :, c], p[:, :, c]
            mu1, mu2 = f(a), f(b)
            s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
            ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
            per.append((ssim_map.mean(), ((2 * s12 + c2) / (s11 + s22 + c2)).mean()))
        ssims.append(np.mean([s for s, _ in per]))
        css.append(np.mean([cs for _, cs in per]))
        gt, p = (uniform_filter(im, 2)[::2, ::2, :] for im in (gt, p))
    mcs = np.array(css[:-1]).astype(complex) ** weights[:-1]
    return float(np.real(np.prod(mcs) * complex(ssims[-1]) ** weights[-1]))


def test_sewar_ms_ssim_matches_scipy_transcription():
    rng = np.random.default_rng(0)
    base = render_phantoms(4, 128, seed=1)[0].numpy()
    noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).round()
    ours = sewar_ms_ssim(torch.from_numpy(base).double(), torch.from_numpy(noisy))
    for i in range(4):
        expected = sewar_msssim_numpy(base[i].transpose(1, 2, 0), noisy[i].transpose(1, 2, 0))
        assert ours[i].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    rgb = rng.integers(0, 256, (2, 3, 128, 128)).astype(np.float64)
    rgb2 = np.clip(rgb + rng.normal(0, 40, rgb.shape), 0, 255)
    ours = sewar_ms_ssim(torch.from_numpy(rgb), torch.from_numpy(rgb2))
    expected = sewar_msssim_numpy(rgb[0].transpose(1, 2, 0), rgb2[0].transpose(1, 2, 0))
    assert ours[0].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_saad_ms_ssim_uses_consecutive_pairs():
    images = render_phantoms(6, 64, seed=2)[0]
    twins = images[[0, 0, 1, 1, 2, 2]]
    metric = SaadMSSSIM(batch_size=2)
    values = metric(EvalContext(images, twins))
    assert values["ms_ssim_saad2022_fake"] == pytest.approx(1.0)
    assert values["ms_ssim_saad2022_real"] < 1.0
    assert "consecutive pairs at 128×128" in metric.protocol(EvalContext(images, twins))


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """torchvision's Inception-V3 architecture with seeded random weights, saved as safetensors."""
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    model = inception_v3(weights=None, aux_logits=True, init_weights=True).eval()
    path = tmp_path_factory.mktemp("inc") / "inception_v3.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


@pytest.mark.slow
def test_saad_fid_features_and_batches(random_inception):
    model, path = random_inception
    real, fake = render_phantoms(40, 64, seed=0)[0], render_phantoms(45, 64, seed=5)[0]
    metric = SaadFID(weights=str(path), seed=0)
    ours = metric.features(real[:3], torch.device("cpu"))

    captured = {}
    model.Mixed_6e.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    x = torch.nn.functional.interpolate(real[:3].float(), size=128, mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).repeat(1, 3, 1, 1) / 255
    x = torch.nn.functional.interpolate(x, size=299, mode="bilinear", align_corners=False)
    model.transform_input = False
    with torch.no_grad():
        model(2 * x - 1)
    expected = captured["x"].mean((2, 3)).double().numpy()
    assert ours.shape == (3, 768)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)

    fids = metric.batch_fids(EvalContext(real, fake))
    assert len(fids) == 2 and all(np.isfinite(fids))
    values = metric(EvalContext(real, fake))
    assert values["fid_saad2022_batches"] == 2
    assert values["fid_saad2022_mean"] == pytest.approx(np.mean(fids))


def test_saad_fid_without_weights_or_network_says_what_to_do(monkeypatch):
    from torchvision.models import Inception_V3_Weights

    def refuse(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(type(Inception_V3_Weights.IMAGENET1K_V1), "get_state_dict", refuse)
    images = render_phantoms(20, 32)[0]
    with pytest.raises(GanforgeError, match="download failed .* weights = FILE"):
        SaadFID(weights="", seed=0)(EvalContext(images, images))
