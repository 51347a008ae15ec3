"""Trial entry point for ``nnictl``: one pipeline run (or a search alone) per NNI trial.

In an nnictl YAML (see ``experiment_configs/``)::

    trialCommand: python -m nni_dash.nni_trial --config digits_quick.yml --command run
    trialCodeDirectory: .           # relative to the YAML's folder; the command runs there
    searchSpace:                    # keys are the dotted config paths of ``nni-dash --set``
      search.strategy: {_type: choice, _value: [DASH, DARTS, none]}

The trial's parameters are applied as ``--set`` overrides. Each training epoch (search, then
retrain) is reported as a ``PERIODICAL`` metric (``default`` = the validation metric; every other key
prefixed with its stage, e.g. ``search_val_accuracy``, ``search_prob_<label>_<candidate>``,
``retrain_train_loss``, plus ``stage_index`` 0/1/2 for search/tune/retrain), each tuning trial as one
too, and at the end a ``FINAL`` metric whose ``default`` is the test score (``--command search``: the
supernet's last validation score), with the trial's parameters, ``strategy``, the chosen candidate
per layer (``arch_<label>``, and as numbers ``k_<label>``/``d_<label>``: NNI's trial table offers
columns for numeric metrics only) and the seconds per stage. No key holds a ``/``: NNI's web UI titles a
column with the text between the first two slashes of its key. Reports go
through a channel captured before the search starts (NNI's one-shot engine swaps the default one).

Artefacts go to ``$NNI_OUTPUT_DIR/nni_dash`` (the ``nni-dash`` layout); TensorBoard logs to the
folder the web UI's TensorBoard tab reads (:func:`nni_dash.monitor.nni_tensorboard_dir`). Bad
parameters print ``error: ...`` on stderr and exit with code 2: NNI shows the trial as FAILED and
the message is in its ``trial.stderr``/log; the next trial still runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from nni_dash.errors import DashError

__all__ = ["main", "trial_parameters", "PARAMS_ENV"]

PARAMS_ENV = "NNI_DASH_TRIAL_PARAMS"  # DDP: rank 0 fetches the parameters once, child ranks inherit them


def trial_parameters(main_process: bool) -> tuple[dict[str, Any], Any]:
    """``(parameters, parameter_id)`` of this trial; only the main process asks NNI (each call pops one)."""
    if PARAMS_ENV in os.environ:
        record = json.loads(os.environ[PARAMS_ENV])
        return record["parameters"], record["parameter_id"]
    params: dict[str, Any] = {}
    parameter_id = None
    if main_process:
        import nni
        params = dict(nni.get_next_parameter() or {})
        parameter_id = (getattr(nni.trial, "_params", None) or {}).get("parameter_id")
    os.environ[PARAMS_ENV] = json.dumps({"parameters": params, "parameter_id": parameter_id})
    return params, parameter_id


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested search-space choices (``{"_name": ..., ...}``) flattened to dotted keys."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        key = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat({k: v for k, v in value.items() if k != "_name"}, f"{key}."))
        else:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nni_dash.nni_trial", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (relative to trialCodeDirectory)")
    parser.add_argument("--command", choices=("run", "search"), default="run",
                        help="run: search -> tune -> retrain -> test; search: the search alone")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="fixed overrides applied before the trial's parameters")
    parser.add_argument("--out", help="artefact folder (default $NNI_OUTPUT_DIR/nni_dash)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nni_dash.cli import _quiet, is_main_process, load_config, load_task
    _quiet(verbose=False)
    main_process = is_main_process()
    try:
        params, parameter_id = trial_parameters(main_process)
        flat = _flat(params)
        cfg = load_config(args.config, args.overrides).apply_overrides(flat).validate()
        cfg.trainer.progress_bar = False  # trial logs are files: no progress bars
        import nni_dash  # noqa: F401
        from nni_dash.cli.stages import COMMANDS, Run, check_inputs
        from nni_dash.monitor import OuterTrialReporter, nni_tensorboard_dir

        from nni_dash.pipeline.prepare import prepare
        data = load_task(cfg)
        cfg, data = prepare(cfg, data, warn=lambda text: print(text, file=sys.stderr, flush=True))
        check_inputs(cfg, data)
        reporter = OuterTrialReporter(parameter_id) if main_process else None  # before any search runs
        out = Path(args.out or Path(os.environ.get("NNI_OUTPUT_DIR", ".")) / "nni_dash")
        out.mkdir(parents=True, exist_ok=True)
        tb_root = nni_tensorboard_dir() or out / "tensorboard"
        print(f"nni_dash trial: {data.summary()}; parameters {flat}; artefacts {out}; tensorboard {tb_root}",
              flush=True)
        run = Run(cfg, data, out, tb_root, sinks=[reporter.sink] if reporter else [], main=main_process)
        if reporter is not None:
            reporter.default_key = f"val_{data.metric}"
        result = run.run(COMMANDS[args.command])
        final = _final_metrics(run, result, flat)
        if reporter is not None:
            reporter.final(final)
        print(run.summary(), flush=True)
        print(f"final metric: {final}", flush=True)
    except DashError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return err.exit_code
    return 0


def _final_metrics(run: Any, result: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    metric = run.data.metric
    if "test_score" in result:
        final: dict[str, Any] = {"default": float(result["test_score"]), f"test_{metric}": float(result["test_score"])}
        if result.get("val_score") is not None:  # none after a retrain on train+val
            final[f"val_{metric}"] = float(result["val_score"])
    else:  # the search alone: the supernet's last validation score (else its last training loss)
        last = {row["name"]: float(row["value"]) for row in run.log.rows if row["stage"] == "search"}
        default = last.get(f"val_{metric}", last.get("train_loss", float("nan")))
        final = {"default": default, f"search_val_{metric}": default}
    final.update({k: v for k, v in params.items() if k not in final})
    final["strategy"] = run.cfg.search.strategy
    final.update({f"arch_{label}": value for label, value in (run.sample or {}).items()})
    # NNI's table makes columns of numeric metrics only: kernel size and dilation per layer as numbers
    from nni_dash.nn import parse_candidate
    for label, value in (run.sample or {}).items():
        final[f"k_{label}"], final[f"d_{label}"] = (float(v) for v in parse_candidate(value))
    final.update({f"{stage}_seconds": float(r.get("seconds", 0.0)) for stage, r in result.get("stages", {}).items()})
    return final


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
