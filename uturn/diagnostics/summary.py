"""Posterior summary table: estimates, their Monte Carlo errors, ESS and R-hat per scalar."""

import html
import math
from collections.abc import Mapping

import numpy as np

from .batch import _table

__all__ = ["summary", "Summary", "SUMMARY_COLUMNS"]

#: The columns of a summary, in order.
SUMMARY_COLUMNS = (
    "mean",
    "sd",
    "q5",
    "q50",
    "q95",
    "mcse_mean",
    "mcse_sd",
    "ess_bulk",
    "ess_tail",
    "r_hat",
)
_DEFAULT_REPR_ROWS = 60


class Summary:
    """A posterior summary: one row per scalar quantity, one column per statistic.

    Prints as a fixed-width text table (``print(s)``; ``repr`` shortens long tables)
    and gives structured access for code:

    - ``s.names``: row labels (``"mu"``, ``"theta[0]"``, ``"x[0,1]"``, 0-based);
    - ``s.columns``: column names, `SUMMARY_COLUMNS`;
    - ``s["ess_bulk"]``: one column as a read-only float ndarray, in the order of
      ``s.names`` (``"ess_bulk" in s``, ``list(s)`` and ``s.keys()`` work on columns,
      as for a pandas DataFrame; ``len(s)`` is the number of rows);
    - ``s.row("mu")``: one row as a dict column -> float;
    - ``s.values``: the table as a (rows, columns) float ndarray;
    - ``s.to_dict()``: ``{name: {column: value}}``, plain Python floats (JSON-ready
      apart from NaN);
    - ``s.to_pandas()``: a pandas DataFrame indexed by name (needs pandas).
    """

    def __init__(self, names, table):
        self._names = list(names)
        table = np.array(table, dtype=np.float64).reshape(len(self._names), len(SUMMARY_COLUMNS))
        table.flags.writeable = False
        self._table = table
        self._row_of = {name: i for i, name in enumerate(self._names)}
        if len(self._row_of) != len(self._names):
            repeated = sorted({name for name in self._names if self._names.count(name) > 1})
            raise ValueError(f"summary row names must be unique; repeated: {', '.join(repeated)}")

    @property
    def names(self):
        """Row labels, a new list each time."""
        return list(self._names)

    @property
    def columns(self):
        """Column names, in order."""
        return SUMMARY_COLUMNS

    @property
    def values(self):
        """The table as a read-only float ndarray of shape (rows, columns)."""
        return self._table

    def __getitem__(self, column):
        try:
            index = SUMMARY_COLUMNS.index(column)
        except ValueError:
            hint = f"; for a row use .row({column!r})" if column in self._row_of else ""
            raise KeyError(
                f"{column!r} is not a summary column (columns: {', '.join(SUMMARY_COLUMNS)}){hint}"
            ) from None
        return self._table[:, index]

    def __contains__(self, column):
        return column in SUMMARY_COLUMNS

    def __iter__(self):
        return iter(SUMMARY_COLUMNS)

    def keys(self):
        """Column names (dict-like access: ``s[key]``)."""
        return SUMMARY_COLUMNS

    def __len__(self):
        return len(self._names)

    def row(self, name):
        """One row as a dict column -> float.

        Raises
        ------
        KeyError
            If `name` is not a row label.
        """
        try:
            index = self._row_of[name]
        except KeyError:
            shown = ", ".join(self._names[:20]) + (", ..." if len(self._names) > 20 else "")
            raise KeyError(f"{name!r} is not a row of this summary (rows: {shown})") from None
        return {column: float(value) for column, value in zip(SUMMARY_COLUMNS, self._table[index])}

    def to_dict(self):
        """The table as ``{name: {column: value}}`` with plain Python floats."""
        return {name: self.row(name) for name in self._names}

    def to_pandas(self):
        """The table as a pandas DataFrame indexed by name.

        Raises
        ------
        ImportError
            If pandas is not installed (it is not a dependency of uturn).
        """
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Summary.to_pandas() needs pandas, which is not installed "
                "(pip install pandas); .to_dict(), .values and column access "
                "(summary['ess_bulk']) need nothing beyond numpy"
            ) from None
        return pandas.DataFrame(
            np.array(self._table), index=list(self._names), columns=list(SUMMARY_COLUMNS)
        )

    def to_string(self, max_rows=None):
        """The table as fixed-width text; with `max_rows`, long tables show head and tail."""
        rows = list(range(len(self._names)))
        if max_rows is not None and len(rows) > max_rows:
            head = max(max_rows // 2, 1)
            rows = rows[:head] + [None] + rows[len(rows) - (max_rows - head) :]
        cells = {
            column: _format_column(column, self._table[:, j])
            for j, column in enumerate(SUMMARY_COLUMNS)
        }
        name_width = max([len(name) for name in self._names] + [4])
        widths = {
            c: max(len(c), max((len(s) for s in cells[c]), default=0)) for c in SUMMARY_COLUMNS
        }
        lines = [" " * name_width + "".join("  " + c.rjust(widths[c]) for c in SUMMARY_COLUMNS)]
        for i in rows:
            if i is None:
                lines.append(
                    "...".ljust(name_width)
                    + "".join("  " + "...".rjust(widths[c]) for c in SUMMARY_COLUMNS)
                )
                continue
            lines.append(
                self._names[i].ljust(name_width)
                + "".join("  " + cells[c][i].rjust(widths[c]) for c in SUMMARY_COLUMNS)
            )
        if max_rows is not None and len(self._names) > max_rows:
            lines.append(f"[{len(self._names)} rows x {len(SUMMARY_COLUMNS)} columns]")
        if not self._names:
            lines.append("(no quantities)")
        return "\n".join(lines)

    def __str__(self):
        return self.to_string()

    def __repr__(self):
        return self.to_string(max_rows=_DEFAULT_REPR_ROWS)

    def _repr_html_(self):
        cells = {c: _format_column(c, self._table[:, j]) for j, c in enumerate(SUMMARY_COLUMNS)}
        header = "".join(f"<th>{c}</th>" for c in SUMMARY_COLUMNS)
        body = "".join(
            f"<tr><th>{html.escape(name)}</th>"
            + "".join(f"<td>{cells[c][i]}</td>" for c in SUMMARY_COLUMNS)
            + "</tr>"
            for i, name in enumerate(self._names)
        )
        return f"<table><thead><tr><th></th>{header}</tr></thead><tbody>{body}</tbody></table>"


def _format_column(column, values):
    """Format a column: ESS as integers, R-hat with 3 decimals, other statistics with
    decimals chosen from the column's largest magnitude (4 significant digits for it),
    or in scientific notation when magnitudes are extreme."""
    if column in ("ess_bulk", "ess_tail"):
        return [_format_number(v, "{:.0f}") for v in values]
    if column == "r_hat":
        return [_format_number(v, "{:.3f}") for v in values]
    finite = np.abs(values[np.isfinite(values)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest == 0.0:
        pattern = "{:.3f}"
    elif largest >= 1e6 or largest < 1e-4:
        pattern = "{:.3e}"
    else:
        decimals = min(max(3 - math.floor(math.log10(largest)), 0), 6)
        pattern = "{:.%df}" % decimals
    return [_format_number(v, pattern) for v in values]


def _format_number(value, pattern):
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return pattern.format(value)


def _posterior_of(fit_or_dict):
    if isinstance(fit_or_dict, Mapping):
        return fit_or_dict
    posterior = getattr(fit_or_dict, "posterior", None)
    if isinstance(posterior, Mapping):
        return posterior
    raise TypeError(
        "summary() takes a dict name -> draws array (chains, draws, *shape) or a fit with "
        f"a .posterior dict, got {type(fit_or_dict).__name__}"
    )


def _selected_names(posterior, var_names):
    if var_names is None:
        return list(posterior)
    if isinstance(var_names, str):
        var_names = [var_names]
    names = list(var_names)
    missing = [name for name in names if name not in posterior]
    if missing:
        raise KeyError(
            f"not in the posterior: {', '.join(map(repr, missing))} "
            f"(available: {', '.join(map(str, posterior))})"
        )
    return names


class _Quantity:
    """One posterior quantity: its draws as (chains, draws, k), k its scalar elements in
    C order, and their labels."""

    def __init__(self, name, draws):
        array = np.asarray(draws)
        if array.ndim == 0:
            raise ValueError(
                f"summary(): {name!r} must have shape (chains, draws, *shape), got a scalar"
            )
        if array.ndim == 1:  # one chain of a scalar, as everywhere in uturn.diagnostics
            array = array[np.newaxis, :]
        if (
            array.dtype == object
            or np.iscomplexobj(array)
            or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)
        ):
            raise ValueError(
                f"summary(): {name!r} must hold real numbers, got dtype {array.dtype}"
            )
        self.name = str(name)
        self.shape = array.shape[2:]
        n_elements = math.prod(self.shape)
        self.draws = array.reshape(array.shape[0], array.shape[1], n_elements)

    def __len__(self):
        return self.draws.shape[2]

    def label(self, element):
        """``mu`` for a scalar, ``theta[2]`` or ``x[0,1]`` (0-based) for an element."""
        if not self.shape:
            return self.name
        if len(self.shape) == 1:
            return f"{self.name}[{element}]"
        index = np.unravel_index(element, self.shape)
        return f"{self.name}[{','.join(str(int(i)) for i in index)}]"

    def labels(self):
        if not self.shape:
            return [self.name]
        return [f"{self.name}[{','.join(map(str, index))}]" for index in np.ndindex(*self.shape)]


def _quantities(posterior, var_names):
    """The selected quantities of a posterior dict, in order, validated."""
    return [_Quantity(name, posterior[name]) for name in _selected_names(posterior, var_names)]


def _diagnostics_table(quantities, summary):
    """`batch.convergence_table` of the scalar elements of `quantities`, in order.

    Quantities with the same chains and draws (usually all) go in one call, so that
    many small vector quantities still make large blocks.
    """
    columns = {}
    group = []
    for quantity in quantities + [None]:
        if group and (quantity is None or quantity.draws.shape[:2] != group[0].draws.shape[:2]):
            table = _table([q.draws for q in group], summary)
            for name, column in table.items():
                columns.setdefault(name, []).append(column)
            group = []
        if quantity is not None:
            group.append(quantity)
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def summary(fit_or_dict, var_names=None):
    """Summarise posterior draws: one row per scalar quantity.

    Columns (`SUMMARY_COLUMNS`): ``mean``, ``sd`` (denominator S - 1), ``q5``, ``q50``,
    ``q95`` (quantiles with linear interpolation), ``mcse_mean``, ``mcse_sd`` (Monte
    Carlo standard errors, see `mcse_mean`, `mcse_sd`), ``ess_bulk``, ``ess_tail`` (see
    `ess_bulk`, `ess_tail`) and ``r_hat`` (the rank-normalised split R-hat of `rhat`),
    the same statistics as Stan's posterior package ``summarise_draws()`` and ArviZ
    ``summary()``. Trust estimates only with ``r_hat < 1.01`` and both ESS above 100
    per chain (Vehtari et al. 2021).

    Parameters
    ----------
    fit_or_dict : Mapping or fit
        A dict name -> array of draws of shape (chains, draws, *shape), or any object
        with such a dict as its ``.posterior`` attribute (a uturn Fit). A 1-D array is a
        single chain of a scalar. Vector and array quantities are expanded into one row
        per element, labelled with 0-based indices: ``theta[0]``, ``x[0,1]``.
    var_names : str or sequence of str, optional
        Quantities to include, in this order; default all, in the dict's order.

    Returns
    -------
    Summary
        Prints as a text table; gives columns as arrays (``s["ess_bulk"]``), rows as
        dicts (``s.row("mu")``), ``s.names``, ``s.to_dict()`` and ``s.to_pandas()``.
        Diagnostics are NaN for constant quantities, for chains of fewer than 8 draws
        and for quantities with non-finite draws (whose mean, sd and quantiles are then
        NaN or infinite, as numpy computes them).

    Raises
    ------
    TypeError
        If `fit_or_dict` is neither a mapping nor has a ``.posterior`` mapping.
    KeyError
        If a name in `var_names` is not in the posterior.
    ValueError
        If a quantity is not a real-valued array with at least one dimension.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    """
    posterior = _posterior_of(fit_or_dict)
    quantities = _quantities(posterior, var_names)
    labels = [label for quantity in quantities for label in quantity.labels()]
    table = np.full((len(labels), len(SUMMARY_COLUMNS)), np.nan)
    if labels:
        columns = _diagnostics_table([q for q in quantities if len(q)], summary=True)
        for j, column in enumerate(SUMMARY_COLUMNS):
            table[:, j] = columns[column]
    return Summary(labels, table)
