"""Backbones as NNI model spaces, and their registry (see :mod:`nni_dash.backbones._registry`)."""
from nni_dash.backbones._registry import (
    AUTO_BACKBONES, HEADS, backbone_class, create_backbone, default_sample, list_backbones, rebuild, register_backbone,
    resolve_backbone,
)
from nni_dash.backbones.resnet1d import ResNet1D
from nni_dash.backbones.tcn import TCN
from nni_dash.backbones.wrn import WideResNet

__all__ = ["AUTO_BACKBONES", "HEADS", "ResNet1D", "TCN", "WideResNet", "backbone_class", "create_backbone", "default_sample",
           "list_backbones", "rebuild", "register_backbone", "resolve_backbone"]
