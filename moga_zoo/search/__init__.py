"""MoGA's search: weighted NSGA-II over Table-1 choice vectors (``nsga``), MoGA's objectives
(``objectives``), the ``evolve`` command (``evolve``)."""
from .nsga import SearchResult, hypervolume, nsga2, pick_along_front

__all__ = ["SearchResult", "hypervolume", "nsga2", "pick_along_front"]
