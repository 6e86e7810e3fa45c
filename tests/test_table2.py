"""Every row of SAMGAN's Table 2 is a config; each file's header row must match what it builds."""

import re
from pathlib import Path

import pytest

from ganforge.config import load_config
from ganforge.plugins import load_registry

TABLE2 = Path(__file__).resolve().parents[1] / "examples" / "table2"
HEADER = re.compile(
    r"PN (?P<PN>[✓x])\s+SN (?P<SN>[✓x])\s+MBD (?P<MBD>[✓x])\s+AM (?P<AM>[✓x])\s+FA (?P<FA>[✓x])\s+"
    r"(?P<opt>Adam|RMSprop)\s+lr (?P<lr>[\d.]+)\s+(?P<loss>RLHinge|WGAN-GP)\s+(?P<data>X-ray|CelebA)"
)


def test_table2_has_all_rows():
    assert len(list(TABLE2.glob("*.toml"))) == 20  # 19 configurations + the MSG-GAN paper's own row


@pytest.mark.parametrize("path", sorted(TABLE2.glob("*.toml")), ids=lambda p: p.stem)
def test_row_matches_its_header(path):
    row = HEADER.search(path.read_text()).groupdict()
    config, _ = load_config(path, load_registry)
    g, d = config.model.generator, config.model.discriminator
    tick = {"✓": True, "x": False}
    assert (g.feature_norm is not None and g.feature_norm.name == "pixel") is tick[row["PN"]]
    for net in (g, d):
        assert ("spectral" in [n.name for n in net.weight_norms]) is tick[row["SN"]]
        assert bool(net.attention_resolutions) is tick[row["AM"]]
    assert d.block.params["minibatch_std"] is tick[row["MBD"]]
    assert (["hflip"] == [a.name for a in config.augment]) is tick[row["FA"]]
    assert config.optim.name == row["opt"].lower()
    assert config.optim.params["lr"] == float(row["lr"])
    assert config.loss.name == {"RLHinge": "relativistic_hinge", "WGAN-GP": "wgan_gp"}[row["loss"]]
    assert config.data.name == {"X-ray": "phantom", "CelebA": "image_folder"}[row["data"]]
    assert config.model.image_channels == (3 if row["data"] == "CelebA" else 1)
