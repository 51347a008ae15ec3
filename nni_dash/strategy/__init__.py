"""The DASH one-shot strategy (mirrors ``nni.nas.strategy``)."""
from nni_dash.strategy.dash import DASH, MODES
from nni_dash.strategy.lightning_module import DashLightningModule

__all__ = ["DASH", "MODES", "DashLightningModule"]
