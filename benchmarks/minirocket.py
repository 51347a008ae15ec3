"""MiniRocket (aeon 1.6.0) on one task's arrays, for ``benchmarks/realdata.py``.

Runs in the benchmark venv (``bash benchmarks/setup_bench.sh``: aeon pulls in numba, which caps
numpy below the project's version, so it lives in its own venv). Reads an ``.npz`` with
``x_train, y_train, x_test, y_test`` (the task's train+val and test splits), fits
``MiniRocketClassifier(random_state=seed, n_jobs=1)`` and prints one JSON line:
``{"score": test accuracy, "seconds": fit + predict wall time, "aeon": version}``.

    $BENCH_VENV/bin/python benchmarks/minirocket.py data.npz --seed 0
"""
import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import aeon
    from aeon.classification.convolution_based import MiniRocketClassifier

    with np.load(args.npz) as f:
        x_train, y_train, x_test, y_test = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    start = time.perf_counter()
    model = MiniRocketClassifier(random_state=args.seed, n_jobs=1)
    model.fit(x_train.astype(np.float64), y_train)
    score = float(np.mean(model.predict(x_test.astype(np.float64)) == y_test))
    print(json.dumps({"score": score, "seconds": time.perf_counter() - start, "aeon": aeon.__version__}))


if __name__ == "__main__":
    main()
