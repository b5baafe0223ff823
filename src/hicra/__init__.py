"""hicra: hierarchy-aware reinforcement learning of LLM reasoning.

The public API is importable from the package root. Names are resolved lazily, so `import hicra`
(and `hicra --help`) stays fast and does not import torch until an algorithm is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    # algorithms: every name of hicra.algorithms.__all__ (a test keeps the two lists equal)
    **dict.fromkeys((
        "AGGREGATIONS", "grpo_advantages", "drgrpo_advantages", "rloo_advantages", "hicra_advantages",
        "high_entropy_mask", "placebo_mask", "mass_matched_placebo_mask", "MASK_SOURCES", "MASK_SOURCE_ALIASES",
        "ENTROPY_MASK_SOURCES", "LOGPROB_MASK_SOURCES", "HIGH_ENTROPY_QUANTILE", "GATED_ENTROPY_TOP",
        "canonical_mask_source", "planning_ratio", "planning_rate", "gradient_mass", "gated_mask", "amplification_mask", "policy_loss",
        "k3_kl"), "hicra.algorithms"),
    # planning tokens
    "Lexicon": "hicra.planning.lexicon",
    "PlanningTagger": "hicra.planning.tagger",
    "semantic_entropy": "hicra.planning.metrics",
    "procedural_conditional_entropy": "hicra.planning.metrics",
    "fork_token_overlap": "hicra.planning.metrics",
    # dynamics
    "relative_perplexity": "hicra.dynamics.metrics",
    "pass_at_k": "hicra.stats",
    "HICRAConfig": "hicra.integrations.trl", "HICRATrainer": "hicra.integrations.trl", "HICRAPlumbing": "hicra.integrations.verl",
    "RolloutWriter": "hicra.dynamics.records", "analyze_run": "hicra.dynamics.analyze", "detect_phases": "hicra.dynamics.phases",
    "OnlineConsolidationDetector": "hicra.dynamics.online", "run_study": "hicra.study",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'hicra' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    """The public names too (they are resolved lazily), for tab completion."""
    return sorted({*globals(), *_PUBLIC})
