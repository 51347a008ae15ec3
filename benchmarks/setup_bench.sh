#!/usr/bin/env bash
# The benchmark venv for the peers that cannot share the project venv: aeon 1.6.0 (MiniRocket) pulls
# in numba, which caps numpy below the project's numpy. Outside the repository; safe to re-run.
set -euo pipefail
BENCH_VENV="${BENCH_VENV:-$HOME/.cache/nni_dash/bench-venv}"
[ -x "$BENCH_VENV/bin/python" ] || python3 -m venv "$BENCH_VENV"
"$BENCH_VENV/bin/pip" install -q --disable-pip-version-check "aeon==1.6.0"
echo "$BENCH_VENV"
