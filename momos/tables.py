"""The summary table of an experiment as terminal text or as a Markdown table.

Shared by :mod:`momos.experiment` (which prints it) and :mod:`momos.report` (which writes
it into ``report.md``); it lives here so that neither imports the other for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["format_table", "markdown_table"]


def format_table(table: pd.DataFrame) -> str:
    """The summary table as fixed-width text for a terminal.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`momos.summarize` or :func:`momos.experiment.aggregate`: one row per
        run; a ``<column>_std`` column is shown as ``mean ± std``.

    Returns
    -------
    str
        One line per run under a header, known columns only, ``-`` for missing values.
    """
    return _format(table, markdown=False)


def markdown_table(table: pd.DataFrame) -> str:
    """The summary table as a GitHub Markdown table.

    Parameters
    ----------
    table : pandas.DataFrame
        As for :func:`format_table`.

    Returns
    -------
    str
        The same cells as :func:`format_table`, numbers right-aligned.
    """
    return _format(table, markdown=True)


#: (column, header, format) of the printed table, in order.
_COLUMNS: Sequence[tuple[str, str, str]] = (
    ("test_acc", "test acc", "{:.3f}"),
    ("bdm_ratio", "BDM tr/init", "{:.4f}"),
    ("gzip_rate_init", "gzip init", "{:.3f}"),
    ("gzip_rate_trained", "gzip tr", "{:.3f}"),
    ("bz2_rate_init", "bz2 init", "{:.3f}"),
    ("bz2_rate_trained", "bz2 tr", "{:.3f}"),
    ("lzma_rate_init", "lzma init", "{:.3f}"),
    ("lzma_rate_trained", "lzma tr", "{:.3f}"),
    ("exact_bits", "exact bits", "{:,.0f}"),
    ("bound_bits", "bound bits", "{:,.0f}"),
    ("trivial_bits", "trivial bits", "{:,.0f}"),
    ("rac_exact", "RAC exact", "{:.3f}"),
    ("rac_bound", "RAC bound", "{:.3f}"),
    ("bits_per_weight", "bits/weight", "{:.3f}"),
    ("acc_vs_baseline", "acc vs base (pts)", "{:+.2f}"),
    ("bits_vs_baseline", "bits vs base", "{:.3f}"),
    ("on_front", "Pareto front", "{}"),
)


def _cell(value: Any, fmt: str, spread: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if spread is None or (isinstance(spread, float) and math.isnan(spread)):
        return fmt.format(value)
    return f"{fmt.format(value)} ± {fmt.replace('+', '').format(spread)}"


def _format(table: pd.DataFrame, markdown: bool) -> str:
    cols = [c for c in _COLUMNS if c[0] in table.columns]
    header = ["run"] + [h for _, h, _ in cols]
    body = [[str(name)] + [_cell(row[c], f, row.get(f"{c}_std")) for c, _, f in cols]
            for name, row in table.iterrows()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join([r[0].ljust(widths[0])] + [x.rjust(w) for x, w in zip(r[1:], widths[1:])])

    return "\n".join(line(r) for r in [header] + body)
