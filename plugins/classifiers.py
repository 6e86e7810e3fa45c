"""Multi-label classifiers: torchvision's DenseNet-121 (the CheXNet architecture) and a small CNN.

Inputs are images in [-1, 1] at any power-of-two resolution, grayscale or RGB; outputs are one
logit per finding (sigmoid, not softmax: findings co-occur).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.checkpoint import load_tensors


class SmallCNNParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(32, ge=1, description="channels of the first conv; doubled at each of the 3 stages")


class SmallCNN(nn.Module):
    """A small CNN (3 conv stages, global pooling, linear head) for tests and quick experiments."""

    def __init__(self, *, image_channels: int, num_classes: int, width: int):
        super().__init__()
        layers, channels = [], image_channels
        for stage in range(3):
            out = width * 2**stage
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DenseNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: str = Field(
        "", description="initial weights: a torchvision densenet121 state dict (safetensors); '' = random"
    )
    drop_rate: float = Field(0.0, ge=0, lt=1)


def densenet121(*, image_channels: int, num_classes: int, weights: str, drop_rate: float) -> nn.Module:
    """torchvision DenseNet-121 with a sigmoid multi-label head; grayscale input through a 1-channel stem."""
    from torchvision.models import densenet121 as tv_densenet121

    model = tv_densenet121(weights=None, drop_rate=drop_rate)
    if weights:
        state = load_tensors(weights)[0]
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}  # ImageNet head
        model.load_state_dict(state, strict=False)
    if image_channels != 3:  # keep what the RGB stem learned: sum its filters over the input channels
        rgb = model.features.conv0.weight.detach()
        model.features.conv0 = nn.Conv2d(image_channels, 64, 7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            model.features.conv0.weight.copy_(rgb.sum(1, keepdim=True).repeat(1, image_channels, 1, 1))
    model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    return model


@hookimpl
def ganforge_register(registry):
    registry.register("classifier", "small_cnn", SmallCNN, SmallCNNParams)
    registry.register("classifier", "densenet121", densenet121, DenseNetParams)
