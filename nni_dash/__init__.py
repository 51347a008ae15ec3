"""nni_dash: DASH (Shen, Khodak, Talwalkar, NeurIPS 2022, https://arxiv.org/abs/2204.07554) for NNI 3.0.

DASH searches, for every convolution of a fixed CNN, its kernel size x dilation, computing the
mixture of all candidates as one aggregated kernel applied by FFT convolution.
"""
import warnings as _warnings

# NNI 3.0 warns at import about torch classes it does not know (harmless, see nni_dash.compat).
_warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*", category=RuntimeWarning)

from nni_dash import compat as _compat  # noqa: E402

_compat.apply()

from nni_dash.backbones import create_backbone, list_backbones, rebuild  # noqa: E402
from nni_dash.config import ExperimentConfig  # noqa: E402
from nni_dash.nn import CausalConv1d, DashConv1d, DashConv2d, dashify  # noqa: E402
from nni_dash.oneshot import MixedDashConv  # noqa: E402  (registers the supernet op with NNI)
from nni_dash.strategy import DASH  # noqa: E402

__version__ = "0.1.0"

__all__ = ["DASH", "CausalConv1d", "DashConv1d", "DashConv2d", "ExperimentConfig", "MixedDashConv", "__version__",
           "create_backbone", "dashify", "list_backbones", "rebuild"]
