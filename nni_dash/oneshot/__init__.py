"""Supernet ops (mirrors ``nni.nas.oneshot.pytorch.supermodule``); importing registers them with NNI."""
from nni_dash.oneshot.mixed_dash_conv import MixedDashConv, register_native_mixed_operation

register_native_mixed_operation()

__all__ = ["MixedDashConv", "register_native_mixed_operation"]
