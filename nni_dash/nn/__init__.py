"""Model-space declarations (mirrors ``nni.nas.nn.pytorch``)."""
from nni_dash.nn.dash_conv import (
    CausalConv1d, DashConv1d, DashConv2d, candidate_grid, format_candidate, make_conv, parse_candidate,
)

__all__ = ["CausalConv1d", "DashConv1d", "DashConv2d", "candidate_grid", "format_candidate", "make_conv",
           "parse_candidate"]
