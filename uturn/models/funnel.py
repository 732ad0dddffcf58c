r"""Neal's funnel: the hierarchical-model pathology in its purest form.

.. math::

    v \sim \mathcal N(0, 3^2), \qquad
    x_i \mid v \sim \mathcal N(0, e^{v}), \quad i = 0, \dots, d - 2,

so :math:`x_i` has standard deviation :math:`e^{v/2}`. The neck (:math:`v \ll 0`)
needs step sizes orders of magnitude smaller than the mouth (:math:`v \gg 0`):
a fixed-step HMC sampler diverges in the neck and under-samples small ``v``,
exactly like the centered eight schools in ``(theta, log tau)``.

Every marginal is known: :math:`v \sim \mathcal N(0, 9)`, and each :math:`x_i`
has mean 0 and variance :math:`E[e^{v}] = e^{9/2}` (sd :math:`e^{9/4} \approx 9.49`);
its quantiles come from :math:`P(x_i \le q) = E_v[\Phi(q e^{-v/2})]`.
"""
import math

import numba
import numpy as np

from ..model import Model

__all__ = ["funnel", "funnel_exact", "V_SD", "X_SD"]

#: Standard deviation of v.
V_SD = 3.0
#: Marginal standard deviation of every x_i: sqrt(E[exp(v)]) = exp(9/4).
X_SD = math.exp(V_SD**2 / 4.0)

_LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _funnel_logp_grad(x, grad):
    r"""Log density of Neal's funnel at ``x = (v, x_0, ..., x_{d-2})`` and its gradient.

    .. math::

        \log p = -\frac{v^2}{18} - \frac{d-1}{2} v - \frac{e^{-v}}{2}\sum_i x_i^2
                 - \frac{d}{2}\log 2\pi - \log 3

    :math:`\partial_v = -v/9 + \tfrac12 e^{-v}\sum_i x_i^2 - (d-1)/2`,
    :math:`\partial_{x_i} = -x_i e^{-v}`. Normalised: it integrates to 1. The
    dimension is read from ``x``, so one compiled (and disk-cached) function
    serves every ``d``.
    """
    n_x = x.shape[0] - 1
    v = x[0]
    # Scale by exp(-v/2) rather than exp(-v): it overflows only for v < -1418.
    inv_scale = math.exp(-0.5 * v)
    sum_z2 = 0.0
    sum_grad = 0.0
    for i in range(n_x):
        z = x[1 + i] * inv_scale
        sum_z2 += z * z
        d_x = -z * inv_scale
        grad[1 + i] = d_x
        sum_grad += d_x
    logp = (-v * v / (2.0 * V_SD**2) - 0.5 * n_x * v - 0.5 * sum_z2
            - 0.5 * (n_x + 1) * _LOG_2PI - math.log(V_SD))
    grad[0] = -v / V_SD**2 + 0.5 * sum_z2 - 0.5 * n_x
    sum_grad += grad[0]
    # Overflow or a NaN coordinate: reject with -inf (and a zero gradient), so the
    # sampler sees a divergence, never NaN or +inf. One sum over the gradient is
    # non-finite as soon as any entry is.
    if not (math.isfinite(logp) and math.isfinite(sum_grad)):
        for i in range(grad.shape[0]):
            grad[i] = 0.0
        return -np.inf
    return logp


def _check_dim(dim):
    """``dim`` as an int >= 2, or a clear TypeError/ValueError."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an integer >= 2, got {dim!r}")
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (v and one x), got {dim}")
    return int(dim)


def funnel(dim=10):
    r"""Neal's funnel in ``dim`` dimensions as a :class:`uturn.Model`.

    .. math::

        v \sim \mathcal N(0, 3^2), \qquad x_i \mid v \sim \mathcal N(0, e^{v}),
        \quad i = 0, \dots, \mathrm{dim} - 2.

    ``dim`` counts every coordinate (``v`` and ``dim - 1`` x's), as in Neal's
    original 10-dimensional example. All coordinates are already unconstrained;
    the log density is normalised (it integrates to 1).

    Parameters
    ----------
    dim : int, default 10
        Total dimension, at least 2.

    Returns
    -------
    uturn.Model
        Names ``v``, ``x[0]``, ..., ``x[dim-2]``; ``constrain`` gives ``v`` and
        ``x`` (shape ``(..., dim - 1)``). The exact marginals are in
        :func:`funnel_exact`, :data:`V_SD` and :data:`X_SD`.

    Raises
    ------
    TypeError
        If ``dim`` is not an integer.
    ValueError
        If ``dim < 2``.

    References
    ----------
    Neal, R. M. (2003). Slice sampling. *Annals of Statistics* 31(3), 705-767
    (section 8).
    """
    dim = _check_dim(dim)
    names = ["v"] + [f"x[{i}]" for i in range(dim - 1)]

    def constrain(draws):
        """``v`` and ``x`` (shape ``(..., dim - 1)``) from draws of shape ``(..., dim)``."""
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim < 1 or draws.shape[-1] != dim:
            raise ValueError(f"draws must have shape (..., {dim}), got {draws.shape}")
        return {"v": draws[..., 0].copy(), "x": draws[..., 1:].copy()}

    return Model(_funnel_logp_grad, dim, names=names, constrain=constrain)


def _x_cdf(q):
    r""":math:`P(x_i \le q) = \int \mathcal N(v; 0, 3^2)\, \Phi(q e^{-v/2})\, dv`.

    Composite 10-point Gauss-Legendre over ``v`` in +-15 sd, cells of width 0.25:
    the integrand is smooth on that scale (Gauss-Hermite is not good enough here:
    ``Phi(q exp(-v/2))`` switches from 0.5 to 1 over a few units of ``v``).
    """
    from scipy import special  # imported here: scipy.special costs 0.2 s at import
    gl_nodes, gl_weights = np.polynomial.legendre.leggauss(10)
    edges = np.linspace(-15.0 * V_SD, 15.0 * V_SD, 361)
    half_width = 0.5 * (edges[1] - edges[0])
    v = (edges[:-1, None] + half_width * (gl_nodes[None, :] + 1.0)).ravel()
    weights = np.tile(half_width * gl_weights, edges.size - 1)
    density = np.exp(-0.5 * (v / V_SD) ** 2) / (V_SD * math.sqrt(2.0 * math.pi))
    return float(weights @ (density * special.ndtr(q * np.exp(-0.5 * v))))


def funnel_exact(dim=10):
    r"""Exact marginal summaries of Neal's funnel.

    :math:`v \sim \mathcal N(0, 9)`: mean 0, sd 3, quantiles :math:`3\,\Phi^{-1}(p)`.
    Each :math:`x_i`: mean 0 (symmetry), sd :math:`\sqrt{E[e^v]} = e^{9/4}`,
    median 0, and :math:`q_{95} = -q_{05}` solving
    :math:`E_v[\Phi(q e^{-v/2})] = 0.95`.

    Parameters
    ----------
    dim : int, default 10
        Total dimension, as in :func:`funnel`.

    Returns
    -------
    dict
        ``{"posterior": {name: {"mean", "sd", "q05", "q50", "q95"}},
        "log_evidence": 0.0}`` for ``v``, ``x[0]``, ..., ``x[dim-2]`` (the same
        layout as :func:`uturn.models.exact_posterior`; the funnel density is
        normalised, so its log evidence is 0).

    References
    ----------
    Neal, R. M. (2003). Slice sampling. *Annals of Statistics* 31(3), 705-767.
    """
    from scipy import special  # imported here: scipy.special costs 0.2 s at import
    _check_dim(dim)
    z95 = float(special.ndtri(0.95))
    # P(x_i <= 0) = 1/2 and P(x_i <= 1e6) > 0.95, so [0, 1e6] brackets q95.
    from scipy import optimize  # imported here: it costs 0.2 s at import

    x_q95 = optimize.brentq(lambda q: _x_cdf(q) - 0.95, 0.0, 1e6, xtol=1e-13, rtol=1e-15)
    posterior = {"v": {"mean": 0.0, "sd": V_SD, "q05": -V_SD * z95, "q50": 0.0,
                       "q95": V_SD * z95}}
    for i in range(dim - 1):
        posterior[f"x[{i}]"] = {"mean": 0.0, "sd": X_SD, "q05": -x_q95, "q50": 0.0,
                                "q95": x_q95}
    return {"posterior": posterior, "log_evidence": 0.0}
