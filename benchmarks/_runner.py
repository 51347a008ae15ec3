"""Shared by the benchmarks that run the CLI: one ``nni-dash run`` per (task, method, seed), its record, the store.

A run writes a data-only config (``task: {name, options}``; every other value is the package
default), runs ``nni-dash run`` in a subprocess (what a user runs) and reads the run's artefacts:
test score, wall time (the whole process), the per-stage seconds and steps, the per-layer decision of
the search (top probability, margin, decided), which architecture the retrain trained and, when tuning
compared the searched kernels with the backbone's, their fold difference and its standard error.
Records are merged into a JSON store under a file lock, so partial results survive and several
benchmark processes may share one file.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def package_commit() -> str:
    """Commit of the package code (``nni_dash/``) the runs use, with ``+dirty`` if it has local changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    return commit + ("+dirty" if git("status", "--porcelain", "--", "nni_dash") else "")


def cpu_model() -> str:
    """The CPU's model name and logical core count, e.g. ``"AMD EPYC, 2 logical cores"`` (recorded per run)."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores"


def software() -> str:
    """torch, Python and the kernel, e.g. ``"torch 2.13.0+cpu, Python 3.11.7, Linux 6.18"``."""
    import torch
    return f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def machine() -> str:
    """:func:`cpu_model` and :func:`software`."""
    return f"{cpu_model()}, {software()}"


def run_cli(task: str, options: dict[str, Any], seed: int, *, overrides: list[str] = (), budget: str | None = None,
            keep: Path | None = None, timeout: float = 3600) -> dict[str, Any]:
    """One ``nni-dash run`` of the data-only config for ``task``; the run's record (see module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="nni-dash-bench-"))
    cfg = work / "data.yml"
    cfg.write_text(yaml.safe_dump({"task": {"name": task, "options": {**options, "seed": seed}}}))
    out = work / "run"
    cmd = [sys.executable, "-m", "nni_dash.cli", "run", str(cfg), "--out", str(out), "--set", f"seed={seed}",
           "--set", "trainer.progress_bar=false", *[a for o in overrides for a in ("--set", o)]]
    if budget:
        cmd += ["--budget", budget]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.monotonic() - start
    record: dict[str, Any] = {"task": task, "options": options, "seed": seed, "overrides": list(overrides),
                              "budget": budget or "auto", "wall_seconds": wall, "returncode": proc.returncode,
                              "commit": package_commit(), "date": datetime.date.today().isoformat(),
                              "machine": cpu_model()}
    if proc.returncode != 0:
        record["error"] = (proc.stderr or proc.stdout)[-2000:]
        shutil.rmtree(work, ignore_errors=True)
        return record
    metrics = json.loads((out / "metrics.json").read_text())
    stages = metrics.get("stages", {})
    record.update(score=metrics["test_score"], metric=metrics["metric"], backbone=metrics.get("backbone"),
                  stage_seconds={s: r.get("seconds") for s, r in stages.items()},
                  steps={s: r.get("steps") for s, r in stages.items() if r.get("steps")},
                  strategy=stages.get("search", {}).get("strategy"),
                  architecture=stages.get("retrain", {}).get("architecture"),
                  searched_architecture=stages.get("search", {}).get("architecture"),
                  argmax=stages.get("search", {}).get("argmax"),
                  kept=(stages.get("tune", {}).get("best") or {}).get("architecture"),
                  tune_selected_on=stages.get("tune", {}).get("selected_on"))
    preference = stages.get("tune", {}).get("preference") or {}
    if preference.get("difference") is not None:  # searched - backbone over the tuning folds, and its SE
        record["preference"] = {k: preference[k] for k in ("difference", "standard_error")}
    probs = out / "search" / "probs.json"
    if probs.is_file():
        decision = json.loads(probs.read_text()).get("decision", {})
        if decision:
            record["decision"] = {"layers": len(decision), "decided": sum(d["decided"] for d in decision.values()),
                                  "mean_lift": sum(d["lift"] for d in decision.values()) / len(decision),
                                  "mean_top": sum(d["top"] for d in decision.values()) / len(decision)}
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(out, keep)
    shutil.rmtree(work, ignore_errors=True)
    return record


class Store:
    """``{"meta": {...}, "runs": [...]}`` in a JSON file; runs are keyed by ``key`` fields."""

    def __init__(self, path: Path, key: tuple[str, ...]) -> None:
        self.path, self.key = path, key

    def load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {"meta": {}, "runs": []}

    def has(self, record: dict[str, Any]) -> bool:
        want = tuple(record[k] for k in self.key)
        return any(tuple(r.get(k) for k in self.key) == want and "error" not in r for r in self.load()["runs"])

    def add(self, record: dict[str, Any], meta: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        want = tuple(record[k] for k in self.key)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db = self.load()
            db["runs"] = [r for r in db["runs"] if tuple(r.get(k) for k in self.key) != want] + [record]
            commands = db["meta"].get("commands", [])
            if meta.get("command") and meta["command"] not in commands:
                commands.append(meta["command"])
            db["meta"].update({k: v for k, v in meta.items() if k != "command"}, commands=commands)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(db, indent=1, default=str))
            tmp.replace(self.path)


def run_grid(store: Store, cells: Iterable[tuple[str, str, int]], run: Callable[[str, str, int], dict[str, Any]],
             report: Callable[[dict[str, Any]], None], *, command: str, rerun: bool = False) -> None:
    """Run every ``(task, method, seed)`` of ``cells`` the store lacks (all with ``rerun``), storing, printing
    and reporting after each, so a stopped benchmark keeps what it finished."""
    meta = {"date": datetime.date.today().isoformat(), "software": software(), "command": command}
    for task, method, seed in cells:
        if not rerun and store.has({"task": task, "method": method, "seed": seed}):
            continue
        record = run(task, method, seed)
        store.add(record, meta)
        score = record.get("score")
        print(f"{task} {method} seed {seed}: "
              + (f"{score:.4f} in {record.get('wall_seconds', 0):.0f} s" if score is not None
                 else f"failed: {' '.join(str(record.get('error')).split())[-200:]}"), flush=True)
        report(store.load())


def report_tail(db: dict[str, Any], discussion: Path) -> list[str]:
    """The end of a benchmark report: its failed runs, then the hand-written discussion file if there is one."""
    lines: list[str] = []
    errors = [r for r in db["runs"] if "error" in r]
    if errors:
        lines += ["## Failed runs", ""] + [f"- {r['task']} {r['method']} seed {r['seed']}: "
                                           f"{' '.join(str(r['error']).split())[-300:]}" for r in errors] + [""]
    if discussion.exists():
        lines += ["## Discussion", "", discussion.read_text().strip(), ""]
    return lines

