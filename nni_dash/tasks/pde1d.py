"""``burgers``: 1-D dense regression u0 -> u(T) for viscous Burgers (datasets.md section 3.2; not in NB360).

Equation: ``u_t + u u_x = nu u_xx`` on the periodic interval [0, 1), solved pseudo-spectrally
(:func:`solve_burgers`): Fourier in space, integrating-factor RK4 in time (diffusion exact), 2/3
de-aliasing of the nonlinear term, batched over samples, float64. The time step obeys an advective
CFL bound from ``max |u0|`` (viscous Burgers never increases ``max |u|``).

Initial conditions (:func:`sample_initial_conditions`): Gaussian random fields with covariance
``625 (-Delta + 25 I)^(-2)`` (as in FNO), i.e. the Fourier mode of wavenumber k has variance
``625 / ((2 pi k)^2 + 25)^2``; modes 1 <= k < ``resolution / 2`` are drawn and the mean mode k = 0
is set to zero (as in FNO's sampler: Burgers conserves the mean, so it would be a free offset).

Task arrays: ``x`` float32 ``(N, 2, resolution)`` = [u0 / s, grid x in [0, 1)] (``grid=False`` drops
the grid channel); ``y`` float32 ``(N, 1, resolution)`` = u(T) / s. The single scale ``s`` is the std
of u0 over the *training* inputs, shared by input and target so the identity map stays the identity
(rel. L2 is scale-free anyway). The solve runs on ``resolution * solve_factor`` points and is
subsampled. ``seed`` drives the initial conditions; train/val/test are independent draws. Cached.
"""
from __future__ import annotations

import numpy as np

from nni_dash.errors import ConfigError
from nni_dash.tasks.base import TaskData, cached_arrays, register_task

__all__ = ["sample_initial_conditions", "solve_burgers", "burgers"]


def sample_initial_conditions(n: int, resolution: int, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` fields on ``resolution`` grid points of [0, 1), float64 ``(n, resolution)`` (see module doc)."""
    k = np.arange(resolution // 2)
    var = 625.0 / ((2 * np.pi * k) ** 2 + 25.0) ** 2
    # u(x) = sum_{k>=1} sqrt(2 var_k) (xi_k cos 2 pi k x + eta_k sin 2 pi k x)
    coef = rng.standard_normal((n, len(k))) - 1j * rng.standard_normal((n, len(k)))
    coef *= np.sqrt(2 * var) * resolution / 2
    coef[:, 0] = 0.0  # zero-mean fields, as FNO's sampler (the mean is conserved, so it is uninformative)
    return np.fft.irfft(coef, n=resolution, axis=-1)


def solve_burgers(u0: np.ndarray, *, viscosity: float, t_final: float, cfl: float = 0.8,
                  min_steps: int = 10) -> np.ndarray:
    """Integrate Burgers from ``u0`` ``(..., n)`` (periodic grid on [0, 1)) to ``t_final``; same shape.

    ``dt <= cfl / (n * max|u0|)`` keeps RK4 stable for the advective term (largest kept wavenumber
    ``2 pi n / 3``); at least ``min_steps`` steps are taken.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n = u0.shape[-1]
    k = 2 * np.pi * np.fft.rfftfreq(n, d=1.0 / n)            # angular wavenumbers 2 pi m
    keep = np.fft.rfftfreq(n, d=1.0 / n) < n / 3.0           # 2/3 rule
    umax = float(np.abs(u0).max()) if u0.size else 0.0
    steps = max(min_steps, int(np.ceil(t_final * n * umax / cfl)))
    dt = t_final / steps
    lin = -viscosity * k ** 2
    e_full, e_half = np.exp(lin * dt), np.exp(lin * dt / 2)

    def nonlinear(u_hat: np.ndarray) -> np.ndarray:          # -(u^2 / 2)_x in Fourier space
        u = np.fft.irfft(u_hat * keep, n=n, axis=-1)
        return -0.5j * k * np.fft.rfft(u * u, axis=-1) * keep

    v = np.fft.rfft(u0, axis=-1)
    for _ in range(steps):
        k1 = dt * nonlinear(v)
        k2 = dt * nonlinear(e_half * (v + k1 / 2))
        k3 = dt * nonlinear(e_half * v + k2 / 2)
        k4 = dt * nonlinear(e_full * v + e_half * k3)
        v = e_full * v + (e_full * k1 + 2 * e_half * (k2 + k3) + k4) / 6
    return np.fft.irfft(v, n=n, axis=-1)


def _simulate(n: int, resolution: int, solve_factor: int, viscosity: float, t_final: float,
              rng: np.random.Generator, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    fine = resolution * solve_factor
    u0 = sample_initial_conditions(n, fine, rng=rng)
    ut = np.concatenate([solve_burgers(u0[i:i + batch], viscosity=viscosity, t_final=t_final)
                         for i in range(0, n, batch)]) if n else u0
    return u0[:, ::solve_factor], ut[:, ::solve_factor]


@register_task("burgers")
def burgers(*, seed: int = 0, n_train: int = 1000, n_val: int = 200, n_test: int = 200,
            resolution: int = 128, viscosity: float = 0.02, t_final: float = 0.5,
            solve_factor: int = 2, grid: bool = True) -> TaskData:
    """Burgers u0 -> u(``t_final``) at ``resolution`` points; see the module docstring."""
    if resolution < 8 or solve_factor < 1 or viscosity <= 0 or t_final <= 0:
        raise ConfigError(f"task 'burgers': need resolution >= 8, solve_factor >= 1, viscosity > 0, "
                          f"t_final > 0; got {resolution}, {solve_factor}, {viscosity}, {t_final}")
    params = {"seed": seed, "sizes": [n_train, n_val, n_test], "resolution": resolution,
              "viscosity": viscosity, "t_final": t_final, "solve_factor": solve_factor}

    def build() -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, 2])
        out = {}
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            out[f"u0_{split}"], out[f"ut_{split}"] = _simulate(n, resolution, solve_factor, viscosity, t_final, rng)
        return out

    a = cached_arrays("burgers", params, build)
    scale = float(a["u0_train"].std()) or 1.0
    coords = (np.arange(resolution) / resolution).astype(np.float32)

    def inputs(u0: np.ndarray) -> np.ndarray:
        chans = [u0 / scale] + ([np.broadcast_to(coords, u0.shape)] if grid else [])
        return np.stack(chans, axis=1).astype(np.float32)

    arrays = []
    for split in ("train", "val", "test"):
        arrays += [inputs(a[f"u0_{split}"]), (a[f"ut_{split}"][:, None, :] / scale).astype(np.float32)]
    return TaskData("burgers", "dense_regression", "rel_l2", 1, *arrays,
                    description=f"viscous Burgers, nu={viscosity}, T={t_final}, {resolution} points; "
                                f"u0 and u(T) divided by the train std of u0 ({scale:.4g})")
