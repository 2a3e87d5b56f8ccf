"""Architecture search: NSGA-II on genes (Optuna) with surrogate pre-screening, likelihood and OOD objectives."""
from vaelab.search.objectives import OBJECTIVES, TrialContext
from vaelab.search.runner import SearchResult, open_study, run_search
from vaelab.search.space import SearchSpace, load_space

__all__ = ["OBJECTIVES", "TrialContext", "SearchResult", "SearchSpace", "load_space", "open_study", "run_search"]
