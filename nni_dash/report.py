"""Run artefacts: architecture JSON and plot, metric history (CSV/JSON), and the final summary.

Layout of a run's output directory (written by :mod:`nni_dash.cli`)::

    config.yml            resolved configuration (ExperimentConfig.from_yaml reloads it)
    architecture.json     {layer label: "k<kernel>d<dilation>"}  (NNI's dict export format)
    architecture.png      chosen (k, d) per layer over the candidates, shaded by alpha probability
    metrics.json          task, metric, test/val score, per-stage results and seconds, tune trials
    metrics.csv           long format: stage, epoch, name, value (per-epoch history + final scores)
    summary.txt           the summary printed at the end
    preprocess.json       the input standardisation (per-channel mean/std fitted on the train split)
    search/probs.json     {probs: per-layer alpha probabilities, decision: top probability, margin,
                          decided} (differentiable strategies)
    search/checkpoints/   last.ckpt of the one-shot module (epoch ends and every trainer.checkpoint_every_n_steps)
    tune/trials.csv       one row per tuning trial; tune/best.json: the tuned hyperparameters
    retrain/checkpoints/  best.ckpt (best validation) and last.ckpt
    tensorboard/<stage>/  TensorBoard event files (losses, metrics, prob/<label>/<candidate>)

While running, the folder is ``<out>.incomplete`` and also holds ``resume.json`` (command and
``--arch`` inputs, for ``--resume``) and, after a failure, ``error.txt``. JSON/CSV files and
checkpoints are written atomically (temporary file + ``os.replace``), so a kill never leaves a torn file.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "write_json", "read_architecture", "plot_architecture", "format_summary"]


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` through a temporary file in the same folder and ``os.replace`` (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class MetricsLog:
    """Per-epoch rows of every stage plus final values, saved as ``metrics.csv`` and ``metrics.json``."""

    def __init__(self, data: dict[str, Any] | None = None, rows: list[dict[str, Any]] | None = None) -> None:
        self.data: dict[str, Any] = data or {"stages": {}}
        self.rows: list[dict[str, Any]] = rows or []

    @classmethod
    def load(cls, folder: str | Path) -> "MetricsLog":
        """The log of an existing run folder (empty when it has none)."""
        folder = Path(folder)
        data = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else None
        rows = []
        if (folder / "metrics.csv").is_file():
            with open(folder / "metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))
        return cls(data, rows)

    def drop_stages(self, stages: list[str]) -> None:
        """Forget the results of ``stages`` (they are about to be re-run)."""
        self.rows = [r for r in self.rows if r["stage"] not in stages]
        for stage in stages:
            self.data["stages"].pop(stage, None)
        if "retrain" in stages:
            for key in ("test_score", "val_score"):
                self.data.pop(key, None)

    def sink(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        """An :class:`~nni_dash.monitor.EpochRecorder` sink."""
        for name, value in metrics.items():
            self.rows.append({"stage": stage, "epoch": epoch, "name": name, "value": value})

    def stage(self, stage: str, result: dict[str, Any]) -> None:
        self.data["stages"][stage] = result

    def final(self, name: str, value: float) -> None:
        self.rows.append({"stage": "final", "epoch": "", "name": name, "value": value})

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        write_json(folder / "metrics.json", self.data)
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=["stage", "epoch", "name", "value"])
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(folder / "metrics.csv", buffer.getvalue())


def read_architecture(path: str | Path) -> dict[str, str]:
    """``{label: candidate}`` from an ``architecture.json`` (plain, or ``{"sample": {...}}``)."""
    from nni_dash.errors import ConfigError
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"--arch: cannot read an architecture from {str(path)!r}: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("sample"), dict):
        data = data["sample"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"--arch: {path} must hold a JSON object {{layer label: 'k<k>d<d>'}}")
    return data


def plot_architecture(path: str | Path, sample: dict[str, str], probs: dict[str, dict[str, float]] | None = None,
                      candidates: dict[str, list[str]] | None = None, title: str = "") -> None:
    """PNG of the chosen (k, d) per layer: rows = layers, columns = candidates, shade = probability."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from nni_dash.nn.dash_conv import parse_candidate

    probs = probs or {}
    labels = list(sample)
    values: list[str] = []
    for label in labels:
        for v in list((candidates or {}).get(label, [])) + list(probs.get(label, {})) + [sample[label]]:
            if v not in values:
                values.append(v)

    def order(v: str) -> tuple:
        try:
            return parse_candidate(v)
        except ValueError:
            return (float("inf"), v)

    values.sort(key=order)
    grid = np.zeros((len(labels), len(values)))
    for i, label in enumerate(labels):
        for j, v in enumerate(values):
            grid[i, j] = probs.get(label, {}).get(v, 1.0 if v == sample[label] else 0.0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(values), 1.0 + 0.35 * len(labels)), dpi=100)
    image = ax.imshow(grid, cmap="Blues", vmin=0.0, vmax=max(1e-9, float(grid.max())), aspect="auto")
    for i, label in enumerate(labels):
        j = values.index(sample[label])
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(values)), [_pretty(v) for v in values], rotation=60, fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{label}: {_pretty(sample[label])}" for label in labels], fontsize=7)
    ax.set_xlabel("candidate (kernel size, dilation)")
    ax.set_title(title or "chosen (k, d) per layer (red); shade = probability", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _pretty(value: str) -> str:
    from nni_dash.nn.dash_conv import parse_candidate
    try:
        k, d = parse_candidate(value)
    except ValueError:
        return value
    return f"k={k}, d={d}"


def format_summary(data: dict[str, Any], sample: dict[str, str] | None) -> str:
    """Readable end-of-run summary: task, architecture (with each layer's top probability and margin),
    the tuned values and what they were scored on, the test score and the time per stage."""
    stages = data.get("stages", {})
    lines = [f"task {data.get('task', '?')} ({data.get('metric', '?')}), backbone {data.get('backbone', '?')}"]
    if sample:
        search = stages.get("search", {})
        strategy = search.get("strategy") or data.get("strategy", "?")
        steps = f", {search['steps']} steps" if search.get("steps") else ""
        lines.append(f"architecture ({strategy}{steps}, {len(sample)} layers):")
        decision = search.get("decision") or {}
        for label, value in sample.items():
            d = decision.get(label)
            extra = "" if not d else (f"   p={d['top']:.3f} ({d['lift']:.1f}x uniform), margin {d['margin']:.3f}"
                                      + ("" if d["decided"] else "  [within noise]"))
            lines.append(f"  {label:<12} {_pretty(value):<12}{extra}")
    tune = stages.get("tune", {})
    if tune.get("best"):
        lines.append("tuned: " + ", ".join(f"{k}={v}" for k, v in tune["best"].items())
                     + (f" (score {tune['best_score']:.4f}: {tune['selected_on']})" if tune.get("selected_on") else ""))
    if "test_score" in data:
        retrain = stages.get("retrain", {})
        val = data.get("val_score")
        note = f"validation {val:.4f}" if val is not None else "no validation: trained on train+val"
        tested = f", tested {retrain['tested']}" if retrain.get("tested") else ""
        lines.append(f"test {data.get('metric')}: {data['test_score']:.4f}   ({note}{tested})")
    times = [(s, r.get("seconds", 0.0)) for s, r in stages.items()]
    if times:
        lines.append("time: " + ", ".join(f"{s} {t:.1f}s" for s, t in times) + f", total {sum(t for _, t in times):.1f}s")
    return "\n".join(lines)
