"""Per-step cost of whole networks at the shapes real data has: DASH supernet against the plain CNNs.

For each shape, on random input, one forward+backward ("pass") of:

* ``backbone``: the plain backbone with its own kernels (``default_sample``);
* ``largest``: the plain CNN with the largest candidate (max k, max d) in every layer, as nn.ConvNd
  (``largest``) and through the FFT-when-cheaper path of tune/retrain (``largest+fft``,
  :func:`nni_dash.nn.use_fft_convs`);
* ``supernet``: the default DASH supernet (``DASH().mutate_model``), one pass; ``step joint`` (one
  pass, then the weight and α optimisers step) and ``step bilevel`` (an α pass and step on one batch,
  then a weight pass and step on another: DASH's first-order default);
* ``DARTS-naive``: NNI's DARTS over a ``LayerChoice`` of separate candidate convs (the naive space),
  at the small shapes only (1-D n<=2000, 2-D 32x32 WRN-16-1: elsewhere a pass takes minutes).

Each (shape, method) runs in a fresh subprocess: the median of ``--reps`` timed passes after one
warm-up, and the process's peak RSS (``ru_maxrss``), with ``--threads`` torch threads. Ratios are
against ``backbone`` at the same shape, measured in the same run. The report also gives the growth of
the supernet's pass time with n (1-D) against ``n log n`` and, for ``largest+fft``, how many layers the cost model sends down each path
(the supernet's per-layer picks are in ``op_speed.md``).

    python -m benchmarks.step_cost                 # writes benchmarks/results/step_cost.md
    python -m benchmarks.step_cost --quick --out benchmarks/results/step_cost_quick.md   # the target shapes only
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._runner import RESULTS, machine, package_commit

MD_PATH = RESULTS / "step_cost.md"
#: name -> (backbone, backbone args, input shape without batch, batch)
SHAPES: dict[str, tuple[str, dict[str, Any], tuple[int, ...], int]] = {
    "1d n=500": ("resnet1d", {}, (1, 500), 32),
    "1d n=2000": ("resnet1d", {}, (1, 2000), 32),
    "1d n=8000": ("resnet1d", {}, (1, 8000), 32),
    "2d 32x32 WRN-16-1": ("wrn", {"depth": 16, "width": 1}, (3, 32, 32), 16),
    "2d 64x64 WRN-16-1": ("wrn", {"depth": 16, "width": 1}, (3, 64, 64), 16),
    "2d 128x128 WRN-16-1": ("wrn", {"depth": 16, "width": 1}, (3, 128, 128), 16),
    "2d 32x32 WRN-16-4": ("wrn", {"depth": 16, "width": 4}, (3, 32, 32), 16),
    "2d 64x64 WRN-16-4": ("wrn", {"depth": 16, "width": 4}, (3, 64, 64), 16),
    "2d 64x64 WRN-16-1 b64": ("wrn", {"depth": 16, "width": 1}, (3, 64, 64), 64),
}
QUICK = ("1d n=2000", "2d 64x64 WRN-16-1", "2d 64x64 WRN-16-1 b64")
METHODS = ("backbone", "largest", "largest+fft", "supernet", "step joint", "step bilevel", "DARTS-naive")
NAIVE_SKIP = ("1d n=8000", "2d 64x64 WRN-16-1", "2d 128x128 WRN-16-1", "2d 32x32 WRN-16-4", "2d 64x64 WRN-16-4",
              "2d 64x64 WRN-16-1 b64")


def _build(shape: str, method: str):
    import torch

    import nni_dash  # noqa: F401  (registers the DASH op)
    from nni_dash.backbones import create_backbone, rebuild
    from nni_dash.nn import parse_candidate, use_fft_convs
    backbone, args, dims, batch = SHAPES[shape]
    common = dict(in_channels=dims[0], num_outputs=10, **args)
    space = create_backbone(backbone, **common)
    if method in ("backbone", "largest", "largest+fft"):
        if method == "backbone":
            sample = space.default_sample()
        else:
            sample = {label: max(m.values, key=lambda v: parse_candidate(v)[::-1])
                      for label, m in space.simplify().items()}
        net = rebuild(backbone, sample, **common)
        if method == "largest+fft":
            use_fft_convs(net, ndims=(1, 2))  # 2-D too: this row measures the FFT path itself
        return net, None
    if method == "DARTS-naive":
        from nni.nas.strategy import DARTS

        from nni_dash.pipeline.search import naive_mixture_hook
        return DARTS(mutation_hooks=[naive_mixture_hook]).mutate_model(space), None
    from nni_dash.strategy import DASH
    net = DASH().mutate_model(space)
    alphas = [p for n, p in net.named_parameters() if "_arch_alpha" in n or n.endswith("alpha")]
    return net, alphas


def measure(shape: str, method: str, reps: int, threads: int) -> dict[str, Any]:
    """One (shape, method) in this process: median seconds per pass/step, peak RSS, paths."""
    import resource

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net, alphas = _build(shape, method)
    _, _, dims, batch = SHAPES[shape]
    x, y = torch.randn(batch, *dims), torch.randint(0, 10, (batch,))
    weights = [p for p in net.parameters() if alphas is None or all(p is not a for a in alphas)]
    w_opt = torch.optim.AdamW(weights, lr=1e-3, fused=True) if method.startswith("step") else None
    a_opt = torch.optim.Adam(alphas, lr=1e-2) if method.startswith("step") and alphas else None

    def one() -> None:
        if method == "step bilevel":
            a_opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            a_opt.step()
            w_opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            w_opt.step()
            return
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        if method == "step joint":
            w_opt.step()
            if a_opt is not None:
                a_opt.step()

    one()  # warm-up (FFT plans, DFT matrices, allocator)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    record: dict[str, Any] = {"shape": shape, "method": method, "seconds": statistics.median(times),
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    paths = [getattr(m, "_fft_paths", None) for m in net.modules()]
    paths = [next(iter(p.values())) for p in paths if p]
    if paths:
        record["paths"] = {"fft": paths.count("fft"), "direct": paths.count("direct")}
    return record


def run_all(shapes: list[str], reps: int, threads: int, timeout: float) -> list[dict[str, Any]]:
    records = []
    for shape in shapes:
        for method in METHODS:
            if method == "DARTS-naive" and shape in NAIVE_SKIP:
                records.append({"shape": shape, "method": method, "skipped": "too slow for this benchmark's limit"})
                continue
            cmd = [sys.executable, "-m", "benchmarks.step_cost", "--one", shape, method, "--reps", str(reps),
                   "--threads", str(threads)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                      cwd=Path(__file__).resolve().parents[1])
                line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else ""
                record = json.loads(line) if line.startswith("{") else {
                    "shape": shape, "method": method, "error": (proc.stderr or proc.stdout)[-300:]}
            except subprocess.TimeoutExpired:
                record = {"shape": shape, "method": method, "skipped": f"over {timeout:.0f} s"}
            records.append(record)
            print(json.dumps(record), flush=True)
    return records


def report(records: list[dict[str, Any]], argv: list[str], threads: int) -> str:
    by = {(r["shape"], r["method"]): r for r in records}
    shapes = list(dict.fromkeys(r["shape"] for r in records))
    lines = ["# Per-step cost of whole networks", "",
             f"Date {datetime.date.today().isoformat()}; machine: {machine()}; {threads} torch threads; "
             f"code {package_commit()}.", "", f"Command: `python -m benchmarks.step_cost {' '.join(argv)}`", "",
             "Median seconds per pass (forward+backward) or step, in a fresh process per cell, and the ratio "
             "to the plain backbone at the same shape (same run). Peak RSS is the whole process's.", "",
             "| shape | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
    for shape in shapes:
        base = by.get((shape, "backbone"), {}).get("seconds")
        cells = []
        for method in METHODS:
            r = by.get((shape, method), {})
            if "seconds" not in r:
                cells.append("—" if not r else ("skipped" if "skipped" in r else "error"))
                continue
            ratio = f" ({r['seconds'] / base:.1f}×)" if base and method != "backbone" else ""
            cells.append(f"{r['seconds'] * 1000:.0f} ms{ratio}")
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    lines += ["", "Peak RSS (MB):", "", "| shape | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
    for shape in shapes:
        cells = [f"{by[(shape, m)]['peak_rss_mb']:.0f}" if "peak_rss_mb" in by.get((shape, m), {}) else "—"
                 for m in METHODS]
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    one_d = [(int(s.split("=")[1]), by[(s, "supernet")]["seconds"]) for s in shapes
             if s.startswith("1d") and "seconds" in by.get((s, "supernet"), {})]
    if len(one_d) >= 2:
        (n0, t0), *rest = one_d
        lines += ["", "Growth of the 1-D supernet pass with n, against n log n (normalised at the smallest n):", "",
                  "| n | time ratio | n log n ratio |", "|---:|---:|---:|"]
        for n, t in one_d:
            lines.append(f"| {n} | {t / t0:.2f} | {n * math.log(n) / (n0 * math.log(n0)):.2f} |")
    picks = [(s, m, by[(s, m)]["paths"]) for s in shapes for m in METHODS if "paths" in by.get((s, m), {})]
    if picks:
        lines += ["", "Cost-model picks (layers on each path):", ""]
        lines += [f"- {s}, {m}: fft {p['fft']}, direct {p['direct']}" for s, m, p in picks]
    errors = [r for r in records if "error" in r]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {r['shape']} {r['method']}: `{' '.join(r['error'].split())}`"
                                        for r in errors]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="only " + ", ".join(QUICK))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, default=MD_PATH, help="report file; the records go beside it as .json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, reps=args.reps, threads=args.threads)))
        return
    shapes = list(QUICK if args.quick else SHAPES)
    records = run_all(shapes, args.reps, args.threads, args.timeout)
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))
    args.out.write_text(report(records, sys.argv[1:], args.threads))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
