"""A weightless torch-fidelity feature extractor for fast metric tests, usable as a ganforge plugin module.

Importing the module registers the extractor with torch-fidelity, so a config with
``plugins = ["pool_features"]`` (and ``tests/`` on ``PYTHONPATH``) makes it available to a
``ganforge build`` subprocess too.
"""

import torch
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

TEST_EXTRACTOR = "ganforge-test-pool"
POOL = {"extractor": TEST_EXTRACTOR, "layer": "48"}


class PoolFeatures(FeatureExtractorBase):
    """The RGB image in [0, 1] average-pooled to 4×4 (48-d)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return ("48",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "48"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        return (F.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1),)


if TEST_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(TEST_EXTRACTOR, PoolFeatures)
