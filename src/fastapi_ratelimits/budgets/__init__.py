"""An alias of :mod:`fastapi_ratelimits.core.budgets`, kept for imports written before the
layout by layers (``Produced``: what a cost function gets). Nothing in the package imports
it. A folder, not a file, so that git follows the old ``budgets.py`` to its new place."""

from ..core.budgets import Budget, CostFn, Named, Produced, Tab, compile_budgets, tab_for, units_counter

__all__ = ["Budget", "CostFn", "Named", "Produced", "Tab", "compile_budgets", "tab_for", "units_counter"]
