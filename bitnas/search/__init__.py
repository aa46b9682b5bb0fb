"""Optuna studies: objective, strategies, resume, Pareto front and its export."""

from bitnas.search.context import SearchContext
from bitnas.search.pareto import format_table, front_trials, member_record
from bitnas.search.storage import mask_url, open_storage, resolve_storage
from bitnas.search.study import SearchResult, export_front, open_study, run_search, spec_of

__all__ = [
    "SearchContext",
    "SearchResult",
    "export_front",
    "format_table",
    "front_trials",
    "mask_url",
    "member_record",
    "open_storage",
    "open_study",
    "resolve_storage",
    "run_search",
    "spec_of",
]
