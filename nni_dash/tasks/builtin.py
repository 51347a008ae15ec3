"""Imports every module that registers built-in tasks (see :mod:`nni_dash.tasks.base`)."""
from nni_dash.tasks import images, dense2d, series, genomics, pde1d, synthetic, user_data  # noqa: F401  (registration)
