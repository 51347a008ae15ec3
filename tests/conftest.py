"""Shared test set-up."""
import logging
import sys

import pytest
import torch

import nni_dash  # noqa: F401  (applies the NNI compatibility fixes, registers the op)

# tiny test tensors run fastest single-threaded, and it avoids oversubscribing 2 shared cores
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _nni_stdout_logging_follows_capture():
    """NNI's stdout log handler keeps the stream it saw at import; point it at pytest's current capture."""
    from nni.runtime import log as nni_log

    handler = nni_log._handlers.get("_stdout_")
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stdout)
    yield
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.__stdout__)


@pytest.fixture(autouse=True)
def _restore_log_levels():
    """The CLI's main() quietens NNI/Lightning loggers for the process; give other tests their levels back."""
    names = ("nni", "pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
