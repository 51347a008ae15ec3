"""``nni-dash``: run the DASH pipeline (or one stage of it) from a YAML config.

Usage::

    nni-dash run     experiment_configs/digits_quick.yml --out runs/digits
    nni-dash search  experiment_configs/digits_quick.yml --set search.epochs=2 --out runs/s1
    nni-dash tune    experiment_configs/digits_quick.yml --arch runs/s1 --out runs/t1
    nni-dash retrain experiment_configs/digits_quick.yml --arch runs/s1/architecture.json --out runs/r1
    nni-dash retrain experiment_configs/digits_quick.yml --out runs/s1   # adds the stage to runs/s1

Output is written to ``<out>.incomplete`` next to the target and renamed to ``<out>`` only when
every stage succeeded. Bad input (unknown key, wrong type, unknown task/strategy/backbone, bad
architecture) is reported before anything is written: one line ``error: <key path>: ...`` on
stderr, exit code 2. A failure during training leaves ``<out>.incomplete/`` with ``error.txt``
(the traceback) and checkpoints; ``<out>`` itself is never half-written. The next run to the same
``--out`` removes a stale ``.incomplete`` folder.

Faults and resume: a NaN/inf loss or alpha stops the run with one line naming the epoch, step and
batch (and the layer for alpha), keeps the last good checkpoint and exits 3
(``--set trainer.nan_policy=skip`` skips such batches instead). Checkpoints (``<stage>/checkpoints/
last.ckpt``) are written atomically at each epoch end and every ``trainer.checkpoint_every_n_steps``
batches. ``nni-dash <command> [CONFIG] --resume DIR`` continues a killed or interrupted run from
``DIR.incomplete`` with its saved ``config.yml`` (CONFIG and ``--set`` may only change
:data:`RESUME_HARMLESS_KEYS`); finished stages are kept, the interrupted one continues from its last
checkpoint mid-epoch, with the same batches and random numbers as an uninterrupted run. The first
Ctrl-C stops at the next batch boundary, saves a checkpoint, prints the ``--resume`` command and
exits 130. ``--dry-run`` runs every check (config, data, model space, architecture) and stops.

Exit codes: 0 success, 2 bad input (config, data, arguments), 3 numerical fault, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Iterator

from nni_dash.errors import ConfigError, DashError

__all__ = ["main", "build_parser", "budget_overrides", "load_config", "staged_output", "is_main_process",
           "load_task", "RESUME_HARMLESS_KEYS"]

# keys that may differ between the saved config of an interrupted run and the one resuming it
RESUME_HARMLESS_KEYS = ("trainer.progress_bar", "trainer.threads", "trainer.log_every_n_steps",
                        "trainer.checkpoint_every_n_steps", "trainer.nan_policy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nni-dash", description="DASH kernel-size x dilation search on NNI 3.0: "
                                     "search -> tune -> retrain -> test.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{search,tune,retrain,run}")
    helps = {"search": "one-shot search; exports the architecture", "tune": "tune retrain hyperparameters of an "
             "architecture", "retrain": "retrain an architecture from scratch and test it",
             "run": "search -> tune -> retrain -> test"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("config", nargs="?", help="pipeline YAML (see experiment_configs/); optional with --resume")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                       help="override a config value (YAML-parsed), repeatable: --set search.epochs=3")
        p.add_argument("--out", help="output folder (default runs/<config>-<command>-<time>)")
        p.add_argument("--budget", metavar="TIME", help="wall-clock limit of the whole run (90s, 10m, 1.5h), or auto "
                       "(the default: steps from the data size) or epochs (the stages' epochs settings)")
        if name in ("tune", "retrain"):
            p.add_argument("--arch", help="architecture JSON, or a search output folder (its tuned hparams too)")
        p.add_argument("--force", action="store_true", help="replace an existing --out folder")
        p.add_argument("--resume", metavar="DIR", help="continue the interrupted run DIR (DIR.incomplete) from its "
                       "saved config and last checkpoint")
        p.add_argument("--dry-run", action="store_true", help="check config, data and model space; write nothing")
        p.add_argument("-v", "--verbose", action="store_true", help="keep NNI/Lightning info logs and warnings")
    return parser


def load_config(path: str, overrides: list[str]) -> "ExperimentConfig":  # noqa: F821
    from nni_dash.config import ExperimentConfig
    return ExperimentConfig.from_yaml(path).apply_overrides(overrides).validate()


def is_main_process() -> bool:
    """False in DDP worker processes (rank > 0), which must not write artefacts."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


@contextlib.contextmanager
def staged_output(target: Path, *, base: Path | None = None, main: bool = True,
                  resume: bool = False) -> Iterator[Path]:
    """Yield ``<target>.incomplete`` (a copy of ``base`` if given; kept as it is with ``resume``); rename it
    to ``target`` on success."""
    work = target.with_name(target.name + ".incomplete")
    if main and not resume:
        shutil.rmtree(work, ignore_errors=True)
        if base is not None:
            shutil.copytree(base, work, symlinks=True)
        work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    except BaseException:
        if main and work.is_dir():
            (work / "error.txt").write_text(traceback.format_exc())
        raise
    if main:
        for name in ("error.txt", "resume.json"):
            (work / name).unlink(missing_ok=True)
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        work.rename(target)
        shutil.rmtree(old, ignore_errors=True)


def load_task(cfg: "ExperimentConfig") -> "TaskData":  # noqa: F821
    """The config's task data; errors name the ``task`` key they come from. Applies ``trainer.threads``."""
    from nni_dash.tasks import create_task
    if cfg.trainer.threads:
        import torch
        torch.set_num_threads(cfg.trainer.threads)
    try:
        return create_task(cfg.task.name, **cfg.task.options)
    except DashError as err:
        if not str(err).startswith("task"):
            err.args = (f"task.options ({cfg.task.name}): {err}",)
        raise


def _quiet(verbose: bool) -> None:
    if verbose:
        return
    logging.getLogger("nni").setLevel(logging.ERROR)  # "training_service will be ignored ..." etc.
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*Trying to infer the `batch_size`.*", ".*LeafSpec.*",
                    ".*pkg_resources is deprecated.*", ".*is found to be not a nn.Module.*",
                    ".*Checkpoint directory .* exists and is not empty.*", ".*GPU available but not used.*",
                    ".*dataloader is not resumable.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _resolve(args: argparse.Namespace) -> tuple[Path, Path | None, dict | None, dict | None]:
    """``(target, base folder to extend, sample, tuned hparams)`` from ``--out``/``--arch``/``--force``."""
    if args.resume:
        from nni_dash.cli.resume import resolve_resume
        return resolve_resume(args)
    stem = Path(args.config).stem
    target = Path(args.out or f"runs/{stem}-{args.command}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    sample = tuned = base = None
    if getattr(args, "arch", None):
        from nni_dash.cli.stages import load_architecture_source
        sample, tuned, source = load_architecture_source(args.arch)
        if source is not None and source.resolve() == target:
            base = target  # --arch is the output folder itself: extend it
    elif args.command in ("tune", "retrain"):
        if not (target / "architecture.json").is_file():
            raise ConfigError(f"--arch: {args.command} needs an architecture: pass --arch ARCH.json or a search "
                              f"output folder, or --out a search output folder to extend")
        base = target
    if base is None and target.exists() and not args.force:
        raise ConfigError(f"--out: {str(target)!r} already exists; choose another folder or pass --force")
    return target, base, sample, tuned


def budget_overrides(text: str | None) -> list[str]:
    """``--budget`` as ``--set`` overrides (``budget.mode``, ``budget.minutes``)."""
    if text is None:
        return []
    from nni_dash.budget import parse_budget
    values = parse_budget(text)
    return [f"budget.mode={values['mode']}", f"budget.minutes={'null' if values['minutes'] is None else values['minutes']}"]


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = build_parser().parse_args(argv)
    _quiet(args.verbose)
    from nni_dash.checkpoint import Interrupted, install_sigint_handler, interrupt_requested
    from nni_dash.errors import NumericalError
    target = work = None
    old_handler = None
    main_process = is_main_process()
    try:
        from nni_dash.cli.resume import load_run_config, resume_hint
        args.overrides = [*args.overrides, *budget_overrides(args.budget)]
        cfg = load_run_config(args)
        target, base, sample, tuned = _resolve(args)
        work = target.with_name(target.name + ".incomplete")
        import nni_dash  # noqa: F401  (NNI compatibility fixes)
        from nni_dash.budget import Budget
        from nni_dash.cli.stages import COMMANDS, Run, active_stages, check_inputs
        from nni_dash.pipeline.prepare import prepare

        data = load_task(cfg)
        cfg, data = prepare(cfg, data, warn=lambda text: print(text, file=sys.stderr))
        check_inputs(cfg, data, sample)
        Budget(cfg.budget.mode, cfg.budget.minutes).check(active_stages(cfg, COMMANDS[args.command]))
        if args.resume:
            from nni_dash.cli.resume import check_same_config
            check_same_config(cfg, work)
        if args.dry_run:
            print(f"nni-dash {args.command}: {data.summary()}\n  checks passed (--dry-run: nothing written)")
            return 0
        if main_process and threading.current_thread() is threading.main_thread():
            old_handler = install_sigint_handler()
        print(f"nni-dash {args.command}: {data.summary()}\n  output: {target}")
        with staged_output(target, base=base, main=main_process, resume=bool(args.resume)) as work:
            if main_process and not args.resume:
                from nni_dash.report import write_json
                write_json(work / "resume.json", {"command": args.command, "sample": sample, "tuned": tuned})
            run = Run(cfg, data, work, work / "tensorboard", main=main_process, sample=sample, tuned=tuned,
                      echo=print if main_process else (lambda text: None), resume=bool(args.resume), started=started)
            run.run(COMMANDS[args.command])
    except DashError as err:
        message = " ".join(str(err).split())
        if isinstance(err, (NumericalError, Interrupted)) and target is not None:
            message += resume_hint(args, target, work, numerical=isinstance(err, NumericalError))
        print(f"error: {message}", file=sys.stderr)
        return err.exit_code
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and not interrupt_requested():
            raise
        hint = resume_hint(args, target, work) if target is not None else ""
        print(f"error: interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if main_process:
        print("\n" + run.summary() + f"\nartefacts: {target}\ntensorboard: tensorboard --logdir {target / 'tensorboard'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
