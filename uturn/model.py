"""The contract between a target density and the sampler.

The sampler sees only a compiled function and a dimension:

``logp_grad(x, grad) -> float``
    ``x`` is the unconstrained position (float64, C-contiguous, length ``dim``).
    The function writes the gradient of the log density into ``grad`` and returns
    the log density (up to an additive constant, Jacobians of transforms included).
    It must not allocate: it runs at every leapfrog step. A point outside the
    support returns ``-inf``; the sampler treats non-finite values as a divergence.
"""
import numbers

import numpy as np
import numba
from numba import types
from numba.core.registry import CPUDispatcher

__all__ = ["Model", "LOGP_GRAD_SIGNATURE", "LOGP_GRAD_TYPE", "CompiledLogpGrad"]

#: The numba signature every log density must compile to.
LOGP_GRAD_SIGNATURE = types.float64(types.float64[::1], types.float64[::1])
#: The first-class function type the compiled sampler takes (compiled and cached once).
LOGP_GRAD_TYPE = types.FunctionType(LOGP_GRAD_SIGNATURE)

_HOW_TO_FIX = (
    "Write it as\n\n"
    "    @numba.njit\n"
    "    def logp_grad(x, grad):\n"
    "        # write d log p / dx into grad[:] and return log p(x) as a float\n"
    "        ...\n\n"
    "taking two float64 arrays of length dim and returning a float."
)


class CompiledLogpGrad(types.WrapperAddressProtocol):
    """A compiled ``logp_grad`` as the compiled sampler receives it: the address of its
    machine code for :data:`LOGP_GRAD_SIGNATURE`, looked up once.

    Passed a numba dispatcher for a :data:`LOGP_GRAD_TYPE` argument, numba looks up
    the compiled function and its address at every call (27 us, measured; with this
    object 9 us), and does so holding the GIL, once per chain. This object implements
    numba's wrapper address protocol (see numba's documentation of first-class function
    types) and keeps ``logp_grad`` alive, so the address stays valid.
    """

    def __init__(self, logp_grad):
        # Imported here: numba.experimental is not needed to build a Model.
        from numba.experimental.function_type import _get_wrapper_address
        self.logp_grad = logp_grad
        self._address = _get_wrapper_address(logp_grad, LOGP_GRAD_SIGNATURE)

    def __wrapper_address__(self):
        return self._address

    def __reduce__(self):
        # The address is this process's: a Model pickled after sampling and loaded in
        # another process carried it along and the sampler jumped to it (a segfault).
        # A copy or an unpickled handle looks the address up again.
        return (CompiledLogpGrad, (self.logp_grad,))

    def signature(self):
        return LOGP_GRAD_SIGNATURE


def _compile_logp_grad(logp_grad):
    """Check that ``logp_grad`` is numba-compiled with the model signature; return it."""
    if isinstance(logp_grad, CPUDispatcher):
        try:
            logp_grad.compile(LOGP_GRAD_SIGNATURE.args)
        except Exception as error:  # numba raises many error kinds while typing
            raise TypeError(
                "logp_grad could not be compiled for two float64 arrays "
                f"(x, grad): {type(error).__name__}: {str(error).splitlines()[0]}\n"
                + _HOW_TO_FIX) from None
        return_type = logp_grad.overloads[LOGP_GRAD_SIGNATURE.args].signature.return_type
        if not isinstance(return_type, types.Float):
            raise TypeError(
                f"logp_grad must return a float (the log density), but it returns "
                f"{return_type}. " + _HOW_TO_FIX)
        return logp_grad
    if isinstance(logp_grad, numba.core.ccallback.CFunc):
        if logp_grad._sig != LOGP_GRAD_SIGNATURE:
            raise TypeError(
                f"logp_grad is a numba cfunc with signature {logp_grad._sig}; expected "
                f"{LOGP_GRAD_SIGNATURE}. " + _HOW_TO_FIX)
        return logp_grad
    if callable(logp_grad):
        raise TypeError(
            f"logp_grad must be a numba-compiled function, got a plain "
            f"{type(logp_grad).__name__}. " + _HOW_TO_FIX)
    raise TypeError(f"logp_grad must be a numba-compiled function, got "
                    f"{type(logp_grad).__name__}. " + _HOW_TO_FIX)


class Model:
    """A target density for the sampler.

    Parameters
    ----------
    logp_grad : numba-compiled function ``(x, grad) -> float``
        Log density on the unconstrained space and its gradient, written into
        ``grad``. Decorate a plain function with ``@numba.njit``; a
        ``numba.cfunc`` with signature ``float64(float64[::1], float64[::1])``
        also works.
    dim : int
        Number of unconstrained coordinates (at least 1).
    names : sequence of str, optional
        Labels of the unconstrained coordinates. Default ``x[0]``, ``x[1]``, ...
    constrain : callable, optional
        ``constrain(draws) -> dict``: maps an array ``(..., dim)`` of unconstrained
        draws to named, constrained quantities of shape ``(..., *shape)``. Run once
        after sampling, in numpy. Default: one vector quantity per coordinate name
        (``x[0]``, ``x[1]`` become ``x`` of shape ``(..., 2)``).
    init : callable, optional
        ``init(rng) -> x0``: an initial unconstrained point drawn with the
        ``numpy.random.Generator`` given. Default: uniform(-2, 2) per coordinate
        as Stan does, retried up to 100 times for a finite log density.
    data : dict, optional
        Observed data, carried into ``Fit.to_arviz()`` as ``observed_data``.

    Raises
    ------
    TypeError
        If ``logp_grad`` is not numba-compiled with the model signature, or
        ``constrain``/``init`` are not callable.
    ValueError
        If ``dim`` is not a positive integer or ``names`` has the wrong length.
    """

    def __init__(self, logp_grad, dim, names=None, constrain=None, init=None,
                 data=None):
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
            raise TypeError(f"dim must be a positive integer, got {dim!r}")
        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        self.dim = int(dim)
        self.logp_grad = logp_grad  # checked and compiled by the property's setter
        if names is None:
            names = [f"x[{i}]" for i in range(self.dim)]
        elif isinstance(names, str):
            raise TypeError("names must be a sequence of strings, one per coordinate, "
                            "not a single string")
        names = [str(name) for name in names]
        if len(names) != self.dim:
            raise ValueError(f"names has {len(names)} entries but dim is {self.dim}")
        if len(set(names)) != len(names):
            raise ValueError("names must be unique")
        self.names = names
        if constrain is not None and not callable(constrain):
            raise TypeError("constrain must be callable: draws (..., dim) -> dict")
        if init is not None and not callable(init):
            raise TypeError("init must be callable: rng -> x0 of shape (dim,)")
        self._constrain = constrain
        self.init = init
        self.data = dict(data) if data is not None else {}

    @property
    def logp_grad(self):
        """The compiled ``logp_grad(x, grad) -> float`` (see the model contract)."""
        return self._logp_grad

    @logp_grad.setter
    def logp_grad(self, function):
        # A function assigned after construction is checked as the constructor checks
        # it (a plain Python function got numba's NotImplementedError from the
        # sampler), and the compiled handle of the one before is dropped.
        self._logp_grad = _compile_logp_grad(function)
        self._compiled_handle = None

    def _compiled_logp_grad(self):
        """``logp_grad`` as a :class:`CompiledLogpGrad`, made once (the address lookup
        costs about 20 us) and again after ``logp_grad`` is replaced (its setter drops
        the handle)."""
        if self._compiled_handle is None:
            self._compiled_handle = CompiledLogpGrad(self._logp_grad)
        return self._compiled_handle

    def __repr__(self):
        shown = ", ".join(self.names[:4]) + (", ..." if self.dim > 4 else "")
        return f"Model(dim={self.dim}, names=[{shown}])"

    def logp(self, x):
        """Log density at one unconstrained point (a convenience; not for hot loops)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"x must have shape ({self.dim},), got {x.shape}")
        grad = np.empty(self.dim)
        return float(self.logp_grad(x.copy(), grad))

    def logp_and_grad(self, x):
        """Log density and its gradient at one unconstrained point, as (float, array)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"x must have shape ({self.dim},), got {x.shape}")
        grad = np.empty(self.dim)
        return float(self.logp_grad(x.copy(), grad)), grad

    def constrain(self, draws):
        """Named constrained quantities from unconstrained draws of shape (..., dim)."""
        draws = np.asarray(draws, dtype=np.float64)
        if self._constrain is not None:
            return {name: np.asarray(value) for name, value in self._constrain(draws).items()}
        return default_constrain(draws, self.names)


def split_name(name):
    """``"theta[3]"`` -> ``("theta", 3)``; ``"mu"`` -> ``("mu", None)``."""
    if name.endswith("]") and "[" in name:
        base, index = name[:-1].split("[", 1)
        if index.isdigit():
            return base, int(index)
    return name, None


def default_constrain(draws, names):
    """Group coordinates named ``base[i]`` into vector quantities; others stay scalar.

    Quantities are read-only views of ``draws`` where the columns allow it (a vector
    whose coordinates are adjacent), so a large model's posterior costs no memory.
    """
    out = {}
    groups = {}
    for column, name in enumerate(names):
        base, index = split_name(name)
        if index is None:
            out[name] = _read_only(draws[..., column])
        else:
            groups.setdefault(base, []).append((index, column))
    for base, members in groups.items():
        members.sort()
        if [index for index, _ in members] == list(range(len(members))) and base not in out:
            columns = [column for _, column in members]
            if columns == list(range(columns[0], columns[0] + len(columns))):
                out[base] = _read_only(draws[..., columns[0]:columns[0] + len(columns)])
            else:
                out[base] = draws[..., columns]
        else:  # indices with gaps: keep every coordinate as its own scalar
            for index, column in members:
                out[f"{base}[{index}]"] = _read_only(draws[..., column])
    return out


def _read_only(view):
    """A view that cannot be written through, so editing a posterior quantity cannot
    silently change the draws it shares memory with."""
    if isinstance(view, np.ndarray) and view.base is not None:
        view = view.view()
        view.flags.writeable = False
    return view
