"""Where the kernel spectrum's DFT matmuls stop beating the FFT route (sets ``kernel_dft.DFT_COST_RATIO``).

Run from the repository root::

    python -m benchmarks.kernel_dft_breakeven

Times one forward + backward of ``kernel_spectrum_planes(w, offsets, sizes, method=m)`` for
``m = "dft"`` and ``"fft"``, ``w`` of ``C_out*C_in = 4096`` rows with ``R`` dense taps per axis, in
1-D (N = 1152, the 1-D case of ``op_speed``) and 2-D (64x64, its 2-D case). Methods run interleaved;
medians of 7 calls after a warm-up. Prints the table and writes ``benchmarks/results/kernel_dft.md``.
The column ``dft_cost / M log2 M`` is what ``pick_method`` compares with ``DFT_COST_RATIO``.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

from nni_dash.ops import kernel_spectrum_planes  # noqa: E402
from nni_dash.ops.kernel_dft import DFT_COST_RATIO, dft_cost, pick_method  # noqa: E402

CASES = [((1152,), (61, 100, 137, 200, 271, 401)), ((64, 64), (15, 27, 40, 63))]


def _fwd_bwd(w: torch.Tensor, offsets: list[list[int]], sizes: tuple[int, ...], method: str) -> float:
    w.grad = None
    t0 = time.perf_counter()
    planes = kernel_spectrum_planes(w, offsets, sizes, method=method)
    planes.backward(torch.ones_like(planes))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(_ROOT / "benchmarks" / "results" / "kernel_dft.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for sizes, taps in CASES:
        for r in taps:
            offsets = [list(range(-(r // 2), r - r // 2))] * len(sizes)
            w = torch.randn(4096, *([r] * len(sizes)), requires_grad=True)
            times: dict[str, list[float]] = {"dft": [], "fft": []}
            for m in times:
                _fwd_bwd(w, offsets, sizes, m)  # warm-up
            for _ in range(args.rounds):
                for m in times:
                    times[m].append(_fwd_bwd(w, offsets, sizes, m))
            dft, fft = (statistics.median(times[m]) * 1e3 for m in ("dft", "fft"))
            m_pts = math.prod(sizes)
            ratio = dft_cost(offsets, sizes) / (m_pts * math.log2(m_pts))
            rows.append((sizes, r, dft, fft, ratio, pick_method(offsets, sizes)))
            print(f"{'x'.join(map(str, sizes)):>7} R={r:<4} dft {dft:7.1f} ms  fft {fft:7.1f} ms  "
                  f"dft_cost/MlogM {ratio:5.1f}  auto picks {rows[-1][-1]}", flush=True)
    lines = [
        "# Kernel spectrum: DFT matmuls against the FFT route", "",
        f"* date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "* command: `python -m benchmarks.kernel_dft_breakeven`",
        f"* machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s); torch {torch.__version__} "
        f"with {args.threads} threads; `DFT_COST_RATIO` = {DFT_COST_RATIO:g}", "",
        "One forward + backward of `kernel_spectrum_planes` for 4096 kernel rows with R dense taps per axis; "
        f"medians of {args.rounds} interleaved calls. `auto` picks `dft` while the ratio column is at most "
        "`DFT_COST_RATIO`.", "",
        "| FFT size | taps per axis | dft ms | fft ms | faster | dft_cost / M log2 M | auto picks |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for sizes, r, dft, fft, ratio, pick in rows:
        lines.append(f"| {'x'.join(map(str, sizes))} | {r} | {dft:.1f} | {fft:.1f} | "
                     f"{'dft' if dft < fft else 'fft'} | {ratio:.1f} | {pick} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
