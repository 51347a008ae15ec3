"""``--resume DIR``: find the interrupted run, check its config, and tell the user how to resume.

An interrupted run is the folder ``DIR.incomplete`` (``DIR`` itself may be given with or without the
suffix) holding ``config.yml`` (the resolved config, written before training starts) and
``resume.json`` (the command, and the ``--arch`` architecture and tuned hparams it started with).
The config that resumes it - ``CONFIG`` plus ``--set``, or the saved one plus ``--set`` when
``CONFIG`` is omitted - must equal the saved one except for
:data:`~nni_dash.cli.RESUME_HARMLESS_KEYS` (strict on purpose: anything else would silently change
the result).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nni_dash.errors import ConfigError

__all__ = ["load_run_config", "resolve_resume", "check_same_config", "resume_hint", "resume_dirs"]


def resume_dirs(value: str) -> tuple[Path, Path]:
    """``(target, work folder)`` of ``--resume value``; a one-line error when there is nothing to resume."""
    path = Path(value).resolve()
    if path.name.endswith(".incomplete"):
        target, work = path.with_name(path.name[: -len(".incomplete")]), path
    else:
        target, work = path, path.with_name(path.name + ".incomplete")
    if not work.is_dir():
        if target.is_dir():
            raise ConfigError(f"--resume: {str(target)!r} finished (no {work.name}); nothing to resume")
        raise ConfigError(f"--resume: no interrupted run at {str(target)!r} (expected the folder {work.name})")
    if not (work / "config.yml").is_file() or not (work / "resume.json").is_file():
        raise ConfigError(f"--resume: {str(work)!r} has no config.yml/resume.json (stopped before training began); "
                          f"start it again without --resume")
    return target, work


def load_run_config(args: argparse.Namespace) -> Any:
    """The validated config of this invocation (see module doc)."""
    from nni_dash.cli import load_config
    if args.resume:
        for flag, value in (("--out", args.out), ("--arch", getattr(args, "arch", None)), ("--force", args.force)):
            if value:
                raise ConfigError(f"{flag}: not allowed with --resume (the interrupted run fixes it)")
        _, work = resume_dirs(args.resume)
        return load_config(args.config or str(work / "config.yml"), args.overrides)
    if not args.config:
        raise ConfigError("config: missing the CONFIG argument (pipeline YAML); it may be omitted only with "
                          "--resume DIR")
    return load_config(args.config, args.overrides)


def resolve_resume(args: argparse.Namespace) -> tuple[Path, None, dict | None, dict | None]:
    target, work = resume_dirs(args.resume)
    try:
        state = json.loads((work / "resume.json").read_text())
        command, sample, tuned = state["command"], state.get("sample"), state.get("tuned")
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"--resume: {str(work / 'resume.json')!r} is unreadable; start again without --resume") \
            from None
    if command != args.command:
        raise ConfigError(f"--resume: {str(target)!r} was started by `nni-dash {command}`; resume it with "
                          f"`nni-dash {command} --resume {target}`")
    return target, None, sample, tuned


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data and prefix.count(".") < 1:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def check_same_config(cfg: Any, work: Path) -> None:
    """Refuse to resume with a config that differs from ``work/config.yml`` outside the harmless keys."""
    from nni_dash.cli import RESUME_HARMLESS_KEYS
    from nni_dash.config import ExperimentConfig
    saved = ExperimentConfig.from_yaml(work / "config.yml").to_dict()
    given = cfg.to_dict()
    a, b = _flat(saved), _flat(given)
    for key in sorted(set(a) | set(b)):
        if key in RESUME_HARMLESS_KEYS or a.get(key) == b.get(key):
            continue
        raise ConfigError(f"--resume: {key} differs from the interrupted run's config.yml (saved {a.get(key)!r}, "
                          f"given {b.get(key)!r}); only {', '.join(RESUME_HARMLESS_KEYS)} may change on resume")


def _last_checkpoint(work: Path | None) -> Path | None:
    if work is None:
        return None
    found = [p for p in (work / "search" / "checkpoints" / "last.ckpt", work / "retrain" / "checkpoints" / "last.ckpt")
             if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resume_hint(args: argparse.Namespace, target: Path, work: Path | None, *, numerical: bool = False) -> str:
    """``"; last good checkpoint ...; resume with: nni-dash ..."`` (one line) for an interrupted run."""
    ckpt = _last_checkpoint(work)
    if ckpt is None or work is None or not (work / "config.yml").is_file():
        return "; no checkpoint was written yet: start again without --resume"
    command = f"nni-dash {args.command} {args.config + ' ' if args.config else ''}--resume {target}"
    extra = " (add --set trainer.nan_policy=skip to skip non-finite batches)" if numerical else ""
    return f"; last good checkpoint kept: {ckpt}; resume with: {command}{extra}"
