"""Model-space declarations (mirrors ``nni.nas.nn.pytorch``)."""
from nni_dash.nn.dash_conv import (
    CausalConv1d, DashConv1d, DashConv2d, candidate_grid, format_candidate, make_conv, parse_candidate,
)
from nni_dash.nn.dashify import DashifiedSpace, dashify, is_searchable_conv
from nni_dash.nn.fast_conv import FFTCausalConv1d, FFTConv1d, FFTConv2d, use_fft_convs, use_plain_convs
from nni_dash.nn.standardize import InputStandardize, set_input_stats

__all__ = ["FFTCausalConv1d", "FFTConv1d", "FFTConv2d", "use_fft_convs", "use_plain_convs", "CausalConv1d", "DashConv1d", "DashConv2d", "DashifiedSpace", "InputStandardize", "candidate_grid", "dashify",
           "format_candidate", "is_searchable_conv", "make_conv", "parse_candidate", "set_input_stats"]
