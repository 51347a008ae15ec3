"""Speed and peak memory of the DASH supernet op against NNI's naive DARTS mixture.

Run from the repository root::

    python -m benchmarks.op_speed                 # default (< ~5 min on 2 CPU cores)
    python -m benchmarks.op_speed --quick         # fewer repeats; skips baseline (b) when very slow
    python -m benchmarks.op_speed --device cuda   # on a GPU
    python -m benchmarks.op_speed --calibrate     # also measure FFT vs direct for the cost model

It prints the tables and writes ``benchmarks/results/op_speed.md`` (``--out``). Each run replaces
only its own section of that file (speed, or calibration), so both survive separate runs.

What is timed: one forward + backward (``op(x).backward(dy)``, ``x`` requiring grad, as for a
layer inside a network) of

* **DASH**: ``MixedDashConv`` as NNI's ``DARTS().mutate_model`` builds it from a ``DashConv1d/2d``
  (differentiable policy, softmax over one alpha), conv path ``auto`` (the cost model decides) and
  forced ``fft``;
* **naive** (a): NNI's ``DifferentiableMixedLayer``, i.e. DARTS applied to a ``LayerChoice`` over the
  |K|*|D| separate ``nn.ConvNd(k, dilation=d, padding=d*(k-1)//2)``;
* **mixed-weights** (b): ``MixedDashConv`` forced to the ``direct`` path (aggregated kernel, one
  dense direct convolution);
* **plain** (c): one ``nn.ConvNd(k=3, padding=1)``.

Timing: after a warm-up, the methods of a case run interleaved, round after round (so load from
other processes hits all of them alike), and the median per method is reported; ratios are
ratios of medians from the same run. A method whose single call takes longer than ``--slow-s``
(only baseline (b) comes near) is not repeated: its one call from the memory run below is its
time sample (noted in the table).

Peak memory: each case first runs in a fresh child process (``--memory-worker``) that makes one
batch-1 warm-up and then one full-size forward+backward per method. On CPU the child is started
with ``MALLOC_MMAP_THRESHOLD_=65536`` (every allocation of 64 KiB or more is its own mmap and goes
back to the OS when freed) and ``MKL_DISABLE_FAST_MM=1``, so its resident memory tracks live
memory; the kernel's peak-RSS counter is reset before the call (``/proc/self/clear_refs`` <- 5)
and the figure is ``VmHWM - VmRSS(before)``: everything the call allocates (saved activations,
temporaries, spectra, gradients, library scratch), not the input, ``dy`` or the parameters. (The
mmap setting slows allocation-heavy code, which is why timing happens in the parent process.) On
CUDA the figure is ``max_memory_allocated - memory_allocated(before)``.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_ROOT = Path(__file__).resolve().parents[1]
_ENV_FLAG = "NNI_DASH_OP_SPEED_CHILD"
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MKL_DISABLE_FAST_MM": "1"}

if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import nni_dash  # noqa: E402,F401  (registers MixedDashConv with NNI's one-shot strategies)
from nni.nas.nn.pytorch import LayerChoice, ModelSpace  # noqa: E402
from nni.nas.oneshot.pytorch.supermodule.differentiable import (  # noqa: E402
    DifferentiableMixedLayer, MixedOpDifferentiablePolicy,
)
from nni.nas.strategy import DARTS  # noqa: E402
from nni_dash.nn import DashConv1d, DashConv2d  # noqa: E402
from nni_dash.oneshot import MixedDashConv  # noqa: E402
from nni_dash.oneshot.mixed_dash_conv import CONV_PATH_KWARG  # noqa: E402
from nni_dash.ops import aggregate_on_grid, conv_path, next_fast_len  # noqa: E402
from nni_dash.ops.fft_conv import direct_conv, fft_conv, fft_length, pad_amounts  # noqa: E402
from nni_dash.ops import dispatch as _dispatch  # noqa: E402

RESULTS = _ROOT / "benchmarks" / "results" / "op_speed.md"


# ---------------------------------------------------------------------------------------------
# cases and methods
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    ndim: int
    batch: int
    channels: int
    size: int
    kernel_sizes: tuple[int, ...]
    dilations: tuple[int, ...]

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.batch, self.channels, *([self.size] * self.ndim))

    def describe(self) -> str:
        spatial = "x".join([str(self.size)] * self.ndim)
        return (f"B={self.batch}, C={self.channels}, {spatial}, K={set(self.kernel_sizes)}, D={set(self.dilations)} "
                f"({len(self.kernel_sizes) * len(self.dilations)} candidates)")


CASES = [
    Case("1-D", 1, 32, 64, 1000, (3, 7, 11, 15, 19), (1, 3, 7, 15)),
    Case("2-D, C=16", 2, 32, 16, 32, (3, 5, 7, 9), (1, 3, 7, 15)),
    Case("2-D, C=64", 2, 32, 64, 32, (3, 5, 7, 9), (1, 3, 7, 15)),
]

METHODS = [  # key, table label
    ("dash", "DASH op (MixedDashConv, path auto)"),
    ("dash_fft", "DASH op, path forced fft"),
    ("naive", "(a) naive: NNI DARTS over LayerChoice of |K||D| convs"),
    ("direct", "(b) aggregated kernel + one direct conv"),
    ("plain", "(c) plain conv k=3"),
]


class _Space(ModelSpace):
    def __init__(self, factory: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.op = factory()


def build_naive(case: Case) -> nn.Module:
    conv_cls = nn.Conv1d if case.ndim == 1 else nn.Conv2d
    c = case.channels
    space = _Space(lambda: LayerChoice(
        [conv_cls(c, c, k, padding=d * (k - 1) // 2, dilation=d) for k in case.kernel_sizes for d in case.dilations],
        label="naive"))
    op = DARTS().mutate_model(space).op
    assert isinstance(op, DifferentiableMixedLayer), type(op)
    return op


def build_dash(case: Case, path: str) -> nn.Module:
    dash_cls = DashConv1d if case.ndim == 1 else DashConv2d
    space = _Space(lambda: dash_cls(case.channels, case.channels, case.kernel_sizes, case.dilations, label="dash"))
    if path == "auto":  # exactly what a user gets from DARTS
        op = DARTS().mutate_model(space).op
    else:  # DARTS' own hook call (DARTS.run_hook), plus the conv-path switch
        memo = {label: nn.Parameter(torch.randn(len(m.values)) * 1e-3) for label, m in space.simplify().items()}
        op = MixedDashConv.mutate(space.op, "op", memo, {"mixed_op_sampling": MixedOpDifferentiablePolicy,
                                                          "softmax": nn.Softmax(-1), CONV_PATH_KWARG: path})
    assert isinstance(op, MixedDashConv) and op.conv_path == path, (type(op), getattr(op, "conv_path", None))
    return op


def build(case: Case, method: str) -> nn.Module:
    if method == "naive":
        return build_naive(case)
    if method == "plain":
        return (nn.Conv1d if case.ndim == 1 else nn.Conv2d)(case.channels, case.channels, 3, padding=1)
    return build_dash(case, {"dash": "auto", "dash_fft": "fft", "direct": "direct"}[method])


def auto_path(case: Case, op: MixedDashConv) -> tuple[str, str]:
    """The path ``conv_path`` picks for this op's aggregated kernel (what ``auto`` runs), and tensor sizes."""
    with torch.no_grad():
        probs = torch.full((len(op.values),), 1.0 / len(op.values))
        kernel = op.aggregated_kernel(probs.to(op.kernels[0]), tuple(case.x_shape[2:]))
        _, grid = aggregate_on_grid(list(op.kernels), [d for _, d in op.pairs], probs.to(op.kernels[0]),
                                    align="right" if op.padding == "causal" else "center",
                                    max_half=max(case.x_shape[2:]) - 1)
    spans = kernel.shape[2:]
    path = (f"{conv_path(case.x_shape, tuple(kernel.shape))} (aggregated kernel {'x'.join(map(str, spans))}, "
            f"on a tap grid of {'x'.join([str(len(grid))] * len(spans))})")
    padding = "causal" if op.padding == "causal" else "same"
    sizes = [next_fast_len(fft_length(case.size, s, pad_amounts(s, padding)[0])) for s in spans]  # as fft_conv does
    bins = math.prod(sizes[:-1]) * (sizes[-1] // 2 + 1)
    c, mib = case.channels, 2.0 ** 20
    n_out = len(case.kernel_sizes) * len(case.dilations)
    sizes_note = (f"FFT size {'x'.join(map(str, sizes))}: kernel spectrum C*C*{bins} complex = "
                  f"{c * c * bins * 8 / mib:.0f} MiB, input spectrum B*C*{bins} complex = "
                  f"{case.batch * c * bins * 8 / mib:.0f} MiB; the naive mixture keeps {n_out} conv outputs of "
                  f"{case.batch * c * case.size ** case.ndim * 4 / mib:.1f} MiB each for backward")
    return path, sizes_note


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd(op: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> None:
    x.grad = None
    for p in op.parameters():
        p.grad = None
    op(x).backward(dy)


def timed(op: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> float:
    _sync(x.device)
    t0 = time.perf_counter()
    fwd_bwd(op, x, dy)
    _sync(x.device)
    return time.perf_counter() - t0


def _proc_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def rss_peak_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _proc_kib("VmHWM")
        return True
    except OSError:
        return False


def measured_call(op: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> tuple[float, float]:
    """One forward+backward: (seconds, peak extra memory in MiB; nan if it cannot be measured)."""
    gc.collect()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        seconds = timed(op, x, dy)
        return seconds, (torch.cuda.max_memory_allocated(x.device) - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS counter of this process
        base = _proc_kib("VmRSS")
    except OSError:
        return timed(op, x, dy), math.nan
    seconds = timed(op, x, dy)
    return seconds, (_proc_kib("VmHWM") - base) / 1024


@dataclass
class Result:
    times: list[float] = field(default_factory=list)
    mem_mib: float = math.nan
    note: str = ""
    skipped: bool = False

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3 if self.times else math.nan


def conv_macs(case: Case, method: str, op: nn.Module) -> float:
    """Forward multiply-adds of a direct-convolution method (for predicting slow baselines)."""
    points = case.batch * case.channels ** 2 * case.size ** case.ndim
    if method == "plain":
        return points * 3 ** case.ndim
    if method == "naive":
        return points * sum(k ** case.ndim for k in case.kernel_sizes for _ in case.dilations)
    with torch.no_grad():
        probs = torch.full((len(op.values),), 1.0 / len(op.values))
        kernel = op.aggregated_kernel(probs.to(op.kernels[0]), tuple(case.x_shape[2:]))
    return points * math.prod(kernel.shape[2:])


def memory_worker(case_index: int, args: argparse.Namespace) -> None:
    """Child process: one full-size forward+backward per method; prints a JSON line {method: [s, MiB, note]}.

    Runs in a fresh process started with ``MALLOC_MMAP_THRESHOLD_`` (see the module docstring),
    after a batch-1 warm-up of each method (library initialisation is not counted).
    """
    import json
    case = CASES[case_index]
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(*case.x_shape, device=device, requires_grad=True)
    dy = torch.randn(*case.x_shape, device=device)
    x1, dy1 = x[:1].detach().requires_grad_(), dy[:1]
    out: dict[str, list] = {}
    order = ["plain"] + [m for m, _ in METHODS if m != "plain"]
    t_plain = macs_plain = math.nan
    for m in order:
        op = build(case, m).to(device)
        if m == "direct":  # baseline (b) can take minutes: predicted from the plain conv's multiply-add rate
            predicted = t_plain * conv_macs(case, m, op) / macs_plain
            if predicted > args.skip_s:
                out[m] = [math.nan, math.nan, f"not run: predicted {predicted:.0f} s per call "
                                              "(multiply-adds x the plain conv's rate)"]
                continue
        timed(op, x1, dy1)
        seconds, mib = measured_call(op, x, dy)
        if m == "plain":
            seconds = min(seconds, *(timed(op, x, dy) for _ in range(3)))
            t_plain, macs_plain = seconds, conv_macs(case, m, op)
        out[m] = [seconds, mib, ""]
        del op
        gc.collect()
    print("MEMORY_RESULT " + json.dumps(out), flush=True)


def run_memory_worker(case_index: int, args: argparse.Namespace) -> dict[str, list]:
    import json
    env = dict(os.environ, **_MALLOC_ENV, **{_ENV_FLAG: "1"})
    cmd = [sys.executable, "-m", "benchmarks.op_speed", "--memory-worker", str(case_index), "--device", args.device,
           "--threads", str(args.threads), "--skip-s", str(args.skip_s)]
    proc = subprocess.run(cmd, env=env, cwd=_ROOT, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("MEMORY_RESULT "):
            return json.loads(line[len("MEMORY_RESULT "):])
    raise RuntimeError(f"memory worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def run_case(case_index: int, args: argparse.Namespace, device: torch.device
             ) -> tuple[dict[str, Result], dict[str, str]]:
    case = CASES[case_index]
    results = {m: Result() for m, _ in METHODS}
    mem = run_memory_worker(case_index, args)
    torch.manual_seed(0)
    ops = {m: build(case, m).to(device) for m, _ in METHODS}
    x = torch.randn(*case.x_shape, device=device, requires_grad=True)
    dy = torch.randn(*case.x_shape, device=device)
    info = dict(zip(("auto_path", "sizes"), auto_path(case, ops["dash"])))
    fast = []
    for m, _ in METHODS:
        seconds, mib, note = mem[m]
        results[m].mem_mib = mib
        if note:
            results[m].skipped, results[m].note = True, note
        elif m == "direct" and seconds > args.slow_s:  # too slow to repeat: its call from the memory run is the sample
            results[m].times.append(seconds)
            results[m].note = "1 call (the memory run)"
        else:
            fast.append(m)

    for m in fast:  # warm-up
        timed(ops[m], x, dy)
    t_start = time.perf_counter()
    rounds = 0
    while rounds < args.rounds and (rounds < args.min_rounds or time.perf_counter() - t_start < args.case_budget_s):
        order = fast[rounds % len(fast):] + fast[:rounds % len(fast)]  # rotate the order every round
        for m in order:
            results[m].times.append(timed(ops[m], x, dy))
        rounds += 1
    info["rounds"] = str(rounds)
    if args.profile:
        info["profile"] = profile_op(ops["dash"], x, dy)
    del ops
    gc.collect()
    return results, info


def profile_op(op: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> str:
    """Where the DASH op's forward+backward time goes (self time per aten op, top entries)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    fwd_bwd(op, x, dy)
    with profile(activities=activities) as prof:
        fwd_bwd(op, x, dy)
    _sync(x.device)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: -e.self_cpu_time_total)
    lines = ["| aten op | calls | self CPU ms | share |", "|---|---:|---:|---:|"]
    for e in events[:8]:
        lines.append(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e3:.1f} | "
                     f"{100 * e.self_cpu_time_total / total:.0f}% |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, str]:
    info = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import nni
        info["nni"] = nni.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", lscpu, flags=re.M))
        info["cpu"] = fields.get("Model name", platform.processor())
        info["cores"] = fields.get("CPU(s)", str(os.cpu_count()))
    except (OSError, subprocess.CalledProcessError):
        info["cpu"], info["cores"] = platform.processor(), str(os.cpu_count())
    info["threads"] = str(torch.get_num_threads())
    try:  # the revision of the ops being measured (nni_dash/ops changes often)
        rev = subprocess.run(["git", "log", "-1", "--format=%h", "--", "nni_dash/ops", "nni_dash/oneshot"], cwd=_ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nni_dash/ops", "nni_dash/oneshot"], cwd=_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        info["code"] = rev + (" + uncommitted changes there" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        info["code"] = "unknown"
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load() -> str:
    parts = []
    try:
        parts.append("loadavg " + " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    except OSError:
        pass
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        parts.append("CPU pressure " + " ".join(line.split()[1:3]))
    except (OSError, IndexError):
        pass
    return ", ".join(parts) or "n/a"


def _pressure_total() -> float:
    """Cumulative microseconds in which some runnable task waited for a CPU (Linux PSI); nan if unavailable."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(line.split("total=")[1])
    except (OSError, IndexError, ValueError):
        return math.nan


def _fmt_ms(r: Result) -> str:
    if r.skipped:
        return "not run"
    if len(r.times) == 1:
        return f"{r.median_ms:.1f} (1 call)"
    return f"{r.median_ms:.1f} [{min(r.times) * 1e3:.0f}-{max(r.times) * 1e3:.0f}]"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def case_table(case: Case, results: dict[str, Result]) -> str:
    dash = results["dash"]
    lines = ["| method | time ms, median [min-max] | time / DASH | peak extra memory MiB | memory / DASH | note |",
             "|---|---:|---:|---:|---:|---|"]
    for m, label in METHODS:
        r = results[m]
        t_ratio = _ratio(r.median_ms, dash.median_ms)
        m_ratio = _ratio(r.mem_mib, dash.mem_mib)
        lines.append(f"| {label} | {_fmt_ms(r)} | {t_ratio:.2f}x | {r.mem_mib:.0f} | {m_ratio:.2f}x | {r.note} |"
                     .replace("nanx", "-").replace("| nan |", "| - |"))
    return "\n".join(lines)


def targets(all_results: dict[str, tuple[dict[str, Result], dict[str, str]]]) -> list[tuple[str, str, str]]:
    """(target, met: "yes"/"**no**"/"n/a", measured) for each case that ran."""
    def verdict(ok: bool, value: float) -> str:
        return "n/a" if math.isnan(value) else ("yes" if ok else "**no**")

    out = []
    for case in CASES:
        if case.name not in all_results:
            continue
        res = all_results[case.name][0]
        dash, naive, plain = res["dash"], res["naive"], res["plain"]
        speedup = _ratio(naive.median_ms, dash.median_ms)
        need = 10.0 if case.ndim == 1 else 5.0
        out.append((f"{case.name}: DASH >= {need:.0f}x faster than the naive mixture", verdict(speedup >= need, speedup),
                    "not measured" if math.isnan(speedup) else
                    f"{speedup:.1f}x" + ("" if speedup >= need else f" (short by a factor {need / speedup:.2f})")))
        if case.ndim == 1:
            slowdown = _ratio(dash.median_ms, plain.median_ms)
            out.append((f"{case.name}: DASH <= 5x a plain k=3 conv", verdict(slowdown <= 5.0, slowdown),
                        "not measured" if math.isnan(slowdown) else
                        f"{slowdown:.1f}x" + ("" if slowdown <= 5 else f" (over by a factor {slowdown / 5:.2f})")))
        mem = _ratio(dash.mem_mib, naive.mem_mib)
        out.append((f"{case.name}: DASH peak memory <= naive's", verdict(mem <= 1.0, mem),
                    "not measured" if math.isnan(mem) else
                    f"{mem:.2f}x naive's" + (f" ({1 / mem:.1f}x less)" if mem < 1 else f" ({mem:.1f}x more)")))
    return out


def diagnose(results: dict[str, Result], info: dict[str, str]) -> str:
    """Data-driven hints for a missed target (from the profile table, if recorded)."""
    prof = info.get("profile", "")
    hints = []
    m = re.search(r"`aten::copy_` \| (\d+) \| [\d.]+ \| (\d+)%", prof)
    if m and int(m.group(1)) > 500:
        hints.append(f"`aten::copy_` runs {m.group(1)} times per step ({m.group(2)}% of the time): a batched matmul "
                     "of the channel mixing gets operands without a unit stride (in the backward: the incoming "
                     "gradient is a permuted view) and falls back to one small GEMM plus copies per frequency bin")
    m = re.search(r"`aten::fill_` \| (\d+) \| [\d.]+ \| (\d+)%", prof)
    if m and int(m.group(2)) >= 5:
        hints.append(f"`aten::fill_` (zero-filling) takes {m.group(2)}% in {m.group(1)} calls: full-frame zero "
                     "gradients per candidate in the kernel aggregation's backward, and zero-padded spectra in "
                     "the FFT backward")
    return "; ".join(hints)


def speed_section(args: argparse.Namespace, device: torch.device, command: str,
                  all_results: dict[str, tuple[dict[str, Result], dict[str, str]]],
                  load_before: str, load_after: str, elapsed: float) -> str:
    info = machine_info(device)
    out = ["## Forward + backward speed and peak memory", "",
           f"* date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
           f"* command: `{command}` (total {elapsed:.0f} s)",
           f"* machine: {info['cpu']}, {info['cores']} CPU(s); torch {info['torch']} with "
           f"{info['threads']} threads, nni {info.get('nni', '?')}, python {info['python']}"
           + (f"; GPU {info['gpu']}" if "gpu" in info else ""),
           f"* device: {device}; load before: {load_before}; after: {load_after}",
           f"* code: last commit touching `nni_dash/ops` or `nni_dash/oneshot`: {info['code']}",
           "",
           "Each figure is one forward + backward of one layer (`op(x).backward(dy)`, x requiring grad). "
           "Methods are run interleaved, round after round; times are medians over the rounds "
           "(after a warm-up), ratios are ratios of medians from this one run. Absolute times on a shared "
           "machine are noisy (see the min-max range and the load figures); the ratios are what the targets use.",
           "",
           "Peak extra memory: one full-size forward+backward per method in a fresh child process, after a "
           "batch-1 warm-up; " + ("CUDA `max_memory_allocated` minus the allocation before the call."
                                  if device.type == "cuda" else
                                  "growth of the child's peak resident set during the call "
                                  "(`/proc/self/clear_refs` reset, then `VmHWM` minus `VmRSS` before the call), "
                                  "with glibc forced to mmap every allocation >= 64 KiB (`MALLOC_MMAP_THRESHOLD_=65536`) "
                                  "so that freed memory leaves the RSS. It counts saved activations, temporaries, "
                                  "FFT spectra, parameter and input gradients and library scratch, but not the "
                                  "input, `dy` or the parameters."),
           ""]
    for case in CASES:
        if case.name not in all_results:
            continue
        results, cinfo = all_results[case.name]
        out += [f"### {case.name}: {case.describe()}", "",
                f"`auto` runs the {cinfo['auto_path']} path; {cinfo['rounds']} timed rounds. {cinfo['sizes']}.", "",
                case_table(case, results), ""]
        if cinfo["auto_path"].startswith("fft"):
            spread = abs(_ratio(results["dash_fft"].median_ms, results["dash"].median_ms) - 1)
            out += [f"`auto` and forced `fft` execute the same code here, so their {100 * spread:.0f}% difference "
                    "is measurement noise.", ""]
    out += ["### Targets", "", "| target | met | measured |", "|---|---|---|"]
    tlist = targets(all_results)
    for name, met, measured in tlist:
        out.append(f"| {name} | {met} | {measured} |")
    out.append("")
    missed = [t for t in tlist if t[1] != "yes"]
    if missed:
        out += ["Missed targets, and where the DASH op's time goes (one profiled forward+backward of the "
                "`auto` op; self CPU time of aten ops):" if any("profile" in v[1] for v in all_results.values())
                else "Missed targets (run without `--no-profile` for a breakdown of the DASH op's time).", ""]
        for case in CASES:
            if case.name in all_results and "profile" in all_results[case.name][1]:
                results, cinfo = all_results[case.name]
                out += [f"**{case.name}**", "", cinfo["profile"], ""]
                hint = diagnose(results, cinfo)
                if hint:
                    out += [f"Detected: {hint}.", ""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# cost-model calibration: FFT vs direct path of nni_dash.ops.dispatch.conv
# ---------------------------------------------------------------------------------------------
def calibration_shapes(quick: bool) -> list[tuple[tuple[int, ...], tuple[int, ...], int, int]]:
    """(x_shape, w_shape, groups, dilation) grid: small and large inputs, narrow and wide layers, short and long
    dense kernels, and the dilated kernels of the discretised CNNs (ResNet1D / WRN-16-1 layer shapes)."""
    shapes = []
    for n in ((40, 250, 1000) if quick else (40, 100, 250, 500, 1000)):
        for c in ((16, 64) if quick else (16, 32, 64)):
            for span in (3, 7, 15, 31, 63, 127, 271):
                if span <= 2 * n - 1:
                    shapes.append(((32, c, n), (c, c, span), 1, 1))
    for n in ((8, 28) if quick else (8, 16, 28, 32)):
        for c in ((16, 64) if quick else (16, 32, 64)):
            for span in (3, 5, 9, 15, 31, 63):
                if span <= 2 * n - 1:
                    shapes.append(((32, c, n, n), (c, c, span, span), 1, 1))
    for n in (8, 28):  # depthwise proxy (groups = C)
        for span in (3, 9, 15, 31, 55):
            if span <= 2 * n - 1:
                shapes.append(((32, 64, n, n), (64, 1, span, span), 64, 1))
    for span in (7, 31, 127, 271):
        shapes.append(((32, 64, 1000), (64, 1, span), 64, 1))
    for n in ((500, 2000) if quick else (500, 2000, 8000)):  # ResNet1D, width 64
        for k, d in ((7, 3), (11, 7), (19, 7), (19, 15)):
            shapes.append(((32, 64, n), (64, 64, k), 1, d))
    for c, n in (((16, 64), (32, 32), (64, 16)) if quick else ((16, 32), (16, 64), (32, 32), (64, 16), (16, 128))):
        for k, d in ((3, 3), (5, 7), (9, 7), (9, 15)):  # WRN-16-1: channels 16/32/64 at the three resolutions
            shapes.append(((16, c, n, n), (c, c, k, k), 1, d))
    return shapes


def _cal_time(x: torch.Tensor, w: torch.Tensor, groups: int, path: str, dilation: int = 1) -> float:
    _sync(x.device)
    t0 = time.perf_counter()
    x.grad = w.grad = None
    if dilation == 1:
        y = _dispatch.conv(x, w, groups=groups, path=path)
    elif path == "fft":
        y = fft_conv(x, w, groups=groups, dilation=dilation)
    else:  # what nn.ConvNd runs: oneDNN / cuDNN's dilated convolution
        y = direct_conv(x, w, groups=groups, dilation=dilation)
    y.sum().backward()
    _sync(x.device)
    return time.perf_counter() - t0


def run_calibration(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    model = _dispatch.CostModel(c_fft=1.0, c_mix=1.0, fft_overhead=0.0, c_dilated=1.0)
    for x_shape, w_shape, groups, dilation in calibration_shapes(args.quick):
        x = torch.randn(*x_shape, device=device, requires_grad=True)
        w = (0.01 * torch.randn(*w_shape, device=device)).requires_grad_()
        direct_macs, _ = model.costs(x_shape, w_shape, groups=groups, dilation=dilation)
        times: dict[str, list[float]] = {"fft": [], "direct": []}
        skip_direct = direct_macs > args.cal_max_macs
        paths = ["fft"] if skip_direct else ["fft", "direct"]
        first = {p: _cal_time(x, w, groups, p, dilation) for p in paths}  # warm-up
        for i in range(args.cal_repeats):
            for p in (paths if i % 2 == 0 else paths[::-1]):
                if first[p] > args.cal_long_s and times[p]:
                    continue  # long call: one timed sample is enough
                times[p].append(_cal_time(x, w, groups, p, dilation))
        row = {"x": x_shape, "w": w_shape, "groups": groups, "dilation": dilation, "direct_macs": direct_macs,
               "fft": min(times["fft"]), "direct": min(times["direct"]) if times["direct"] else math.nan}
        rows.append(row)
        print(f"  {str(x_shape):>18} {str(w_shape):>18} g={groups:<3} d={dilation:<3} fft {row['fft'] * 1e3:8.1f} ms   direct "
              + ("skipped" if skip_direct else f"{row['direct'] * 1e3:8.1f} ms"), flush=True)
    return rows


def _features(row: dict) -> tuple[float, float, float]:
    """(direct multiply-adds, FFT n log n units, channel-mixing real multiply-adds) as CostModel counts them
    (direct: before the ``c_dilated`` factor)."""
    unit = _dispatch.CostModel(c_fft=1.0, c_mix=0.0, fft_overhead=0.0, c_dilated=1.0)
    mix = _dispatch.CostModel(c_fft=0.0, c_mix=1.0, fft_overhead=0.0, c_dilated=1.0)
    d = row.get("dilation", 1)
    direct, fft_units = unit.costs(row["x"], row["w"], groups=row["groups"], dilation=d)
    _, mix_units = mix.costs(row["x"], row["w"], groups=row["groups"], dilation=d)
    return direct, fft_units, mix_units


def _choose(model: "_dispatch.CostModel", row: dict) -> str:
    return conv_path(row["x"], row["w"], groups=row["groups"], dilation=row.get("dilation", 1), model=model)


def _best(row: dict) -> str:
    return "fft" if math.isnan(row["direct"]) or row["fft"] <= row["direct"] else "direct"


def _score(model: "_dispatch.CostModel", rows: list[dict]) -> tuple[int, float]:
    """(#rows where the model picks the faster path, total relative time lost by wrong picks)."""
    right, lost = 0, 0.0
    for row in rows:
        best, pick = _best(row), _choose(model, row)
        if pick == best:
            right += 1
        else:  # a skipped direct call (> cal_max_macs) counts as 10x slower
            lost += row[pick] / row[best] - 1 if not math.isnan(row[pick]) else 10.0
    return right, lost


def fit_cost_model(rows: list[dict]) -> tuple[dict[str, float], str]:
    """Pick (c_fft, c_mix, fft_overhead) that minimise the time lost by wrong path choices.

    Grid search; among equally good constants, the most right picks, then the best least-squares
    fit (in log space) of the FFT time expressed in direct multiply-add units (a median of
    t_direct / MACs over shapes where the direct conv is compute-bound).
    """
    import numpy as np
    measured = [r for r in rows if not math.isnan(r["direct"])]
    big = [r for r in measured if r["direct_macs"] > 2e8 and r.get("dilation", 1) == 1] or measured
    sec_per_mac = statistics.median(r["direct"] / r["direct_macs"] for r in big)
    feats = np.array([_features(r) for r in rows])  # direct MACs, fft units, mixing units
    t_fft = np.array([r["fft"] for r in rows]) / sec_per_mac
    t_dir = np.array([r["direct"] for r in rows])
    fft_best = np.array([_best(r) == "fft" for r in rows])
    # relative time lost when picking the other path
    lost_if_fft = np.where(fft_best, 0.0, np.array([r["fft"] for r in rows]) / t_dir - 1)
    lost_if_direct = np.where(fft_best, np.where(np.isnan(t_dir), 10.0, t_dir / np.array([r["fft"] for r in rows]) - 1),
                              0.0)
    dilated = np.array([r.get("dilation", 1) > 1 for r in rows])
    best = None
    for c_dilated in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0):
        direct = feats[:, 0] * np.where(dilated, c_dilated, 1.0)
        for c_fft in np.geomspace(0.05, 50, 31):
            for c_mix in np.geomspace(0.05, 200, 37):
                for overhead in [0.0, *np.geomspace(1e4, 1e9, 21)]:
                    pred = c_fft * feats[:, 1] + c_mix * feats[:, 2] + overhead
                    pick_fft = pred < direct
                    lost = float(np.sum(np.where(pick_fft, lost_if_fft, lost_if_direct)))
                    right = int(np.sum(pick_fft == fft_best))
                    misfit = float(np.mean(np.log(pred / t_fft) ** 2))
                    key = (round(lost, 3), -right, misfit)
                    if best is None or key < best[0]:
                        best = (key, dict(c_fft=float(c_fft), c_mix=float(c_mix), fft_overhead=float(overhead),
                                          c_dilated=float(c_dilated)))
    note = f"direct conv: {1 / sec_per_mac / 1e9:.1f} G multiply-adds/s (fwd+bwd) on large shapes"
    return best[1], note


def calibration_section(args: argparse.Namespace, device: torch.device, command: str, rows: list[dict]) -> str:
    info = machine_info(device)
    fitted, note = fit_cost_model(rows)
    current = _dispatch.CostModel()
    fitted_model = _dispatch.CostModel(**fitted)
    r_cur, l_cur = _score(current, rows)
    r_fit, l_fit = _score(fitted_model, rows)
    out = ["## Cost-model calibration (FFT vs direct path)", "",
           f"* date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
           f"* command: `{command}`",
           f"* machine: {info['cpu']}, {info['cores']} CPU(s); torch {info['torch']} with {info['threads']} threads;"
           f" device {device}; code: last commit touching `nni_dash/ops` or `nni_dash/oneshot`: {info['code']}",
           "",
           "Forward + backward (x and the kernel requiring grad) of `nni_dash.ops.dispatch.conv(x, w, path=...)` "
           f"with an already aggregated dense kernel: the fastest of {args.cal_repeats} interleaved calls after a "
           f"warm-up (one call when it takes > {args.cal_long_s:g} s; the minimum, because load from other processes "
           "only ever adds time). The direct path is not run above "
           f"{args.cal_max_macs:.0e} forward multiply-adds (it is then counted as the slower path). {note}. "
           "The constants are chosen by a grid search that minimises the relative time lost by wrong picks "
           "(ties: most right picks, then best log-space fit of the FFT time).",
           "",
           f"* constants in `CostModel` now: c_fft={current.c_fft:g}, c_mix={current.c_mix:g}, "
           f"fft_overhead={current.fft_overhead:g}, c_dilated={current.c_dilated:g}: right path in {r_cur}/{len(rows)} shapes, "
           f"time lost by wrong picks {l_cur:.2f} (sum of relative excess)",
           f"* best fit on this data: c_fft={fitted['c_fft']:.3g}, c_mix={fitted['c_mix']:.3g}, "
           f"fft_overhead={fitted['fft_overhead']:.3g}, c_dilated={fitted['c_dilated']:.3g}: right path in "
           f"{r_fit}/{len(rows)}, time lost {l_fit:.2f}",
           "",
           "| x | kernel | groups | dilation | fft ms | direct ms | faster | picked with the constants now | picked with the fit |",
           "|---|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        faster = _best(r)
        pick, pick_fit = _choose(current, r), _choose(fitted_model, r)
        direct = "not run" if math.isnan(r["direct"]) else f"{r['direct'] * 1e3:.1f}"
        out.append(f"| {'x'.join(map(str, r['x']))} | {'x'.join(map(str, r['w']))} | {r['groups']} | {r.get('dilation', 1)} | "
                   f"{r['fft'] * 1e3:.1f} | {direct} | {faster} | {pick}{'' if pick == faster else ' (wrong)'} | "
                   f"{pick_fit}{'' if pick_fit == faster else ' (wrong)'} |")
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
_MARK = "<!-- section:{} -->"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or add) one marked section of the results file, keeping the others."""
    sections: dict[str, str] = {}
    if path.exists():
        text = path.read_text()
        for m in re.finditer(r"<!-- section:(\w+) -->\n(.*?)<!-- end:\1 -->\n", text, flags=re.S):
            sections[m.group(1)] = m.group(2)
    sections[name] = body
    header = ("# `MixedDashConv` operator speed\n\nThe speed and calibration sections are generated by "
              "`benchmarks/op_speed.py` (see its docstring for the method); the analysis section is written by "
              "hand and kept when the script rewrites the others.\n\n")
    known = ("speed", "analysis", "calibration")  # "analysis" is hand-written and kept as it is
    order = [s for s in known if s in sections] + [s for s in sections if s not in known]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(f"{_MARK.format(s)}\n{sections[s]}<!-- end:{s} -->\n\n" for s in order))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds; skip baseline (b) if predicted > 10 s per call")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU (default 2)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(_ROOT)})")
    ap.add_argument("--cases", default="all", help="comma-separated case indices (0=1-D, 1=2-D C=16, 2=2-D C=64)")
    ap.add_argument("--rounds", type=int, default=None, help="max timed rounds per case (default 5, quick 3)")
    ap.add_argument("--min-rounds", type=int, default=None, help="min timed rounds per case (default 3, quick 2)")
    ap.add_argument("--case-budget-s", type=float, default=None,
                    help="stop adding rounds after this many seconds in a case (default 45, quick 20)")
    ap.add_argument("--slow-s", type=float, default=None,
                    help="baseline (b) is run once if slower than this per call (default 5, quick 3)")
    ap.add_argument("--skip-s", type=float, default=None,
                    help="baseline (b) is not run if predicted slower than this per call (default 300, quick 10)")
    ap.add_argument("--memory-worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the profiled call of the DASH op (where its time goes)")
    ap.add_argument("--calibrate", action="store_true", help="also run the FFT-vs-direct cost-model calibration")
    ap.add_argument("--calibrate-only", action="store_true", help="run only the calibration")
    ap.add_argument("--cal-repeats", type=int, default=None, help="calibration repeats per path (default 3, quick 2)")
    ap.add_argument("--cal-long-s", type=float, default=1.0, help="calibration calls longer than this are timed once")
    ap.add_argument("--cal-max-macs", type=float, default=1e10, help="skip direct calls above this many MACs")
    args = ap.parse_args(argv)
    q = args.quick
    for name, default, quick in (("rounds", 5, 3), ("min_rounds", 3, 2), ("case_budget_s", 45.0, 20.0),
                                 ("slow_s", 5.0, 3.0), ("skip_s", 300.0, 10.0), ("cal_repeats", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else default)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_worker is not None:
        memory_worker(args.memory_worker, args)
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False on this machine")
    torch.set_num_threads(args.threads)
    shown = [a for a in sys.argv[1:]]
    command = "python -m benchmarks.op_speed" + ("".join(" " + shlex.quote(a) for a in shown))
    if device.type == "cpu" and not rss_peak_supported():
        print("warning: /proc/self/clear_refs is not writable; peak memory will be reported as '-'", file=sys.stderr)

    if not args.calibrate_only:
        indices = range(len(CASES)) if args.cases == "all" else [int(i) for i in args.cases.split(",")]
        all_results: dict[str, tuple[dict[str, Result], dict[str, str]]] = {}
        load_before, t0, psi0 = _load(), time.perf_counter(), _pressure_total()
        for index in indices:
            case = CASES[index]
            print(f"== {case.name}: {case.describe()}", flush=True)
            all_results[case.name] = run_case(index, args, device)
            print(case_table(case, all_results[case.name][0]), flush=True)
        elapsed = time.perf_counter() - t0
        stalled = (_pressure_total() - psi0) / 1e6 / elapsed
        load_after = _load() + (f"; CPU contention during the run: some task waited for a CPU {100 * stalled:.0f}% of "
                                "the wall time (PSI)" if not math.isnan(stalled) else "")
        section = speed_section(args, device, command, all_results, load_before, load_after, elapsed)
        print(section)
        write_section(args.out, "speed", section)
    if args.calibrate or args.calibrate_only:
        print("== calibration (fwd+bwd, fft vs direct)", flush=True)
        rows = run_calibration(args, device)
        section = calibration_section(args, device, command, rows)
        print(section)
        write_section(args.out, "calibration", section)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
