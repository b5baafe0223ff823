"""hicra: hierarchy-aware reinforcement learning of LLM reasoning.

The public API is importable from the package root. Names are resolved lazily, so `import hicra`
(and `hicra --help`) stays fast and does not import torch until an algorithm is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    # algorithms
    "grpo_advantages": "hicra.algorithms",
    "drgrpo_advantages": "hicra.algorithms",
    "rloo_advantages": "hicra.algorithms",
    "hicra_advantages": "hicra.algorithms",
    "high_entropy_mask": "hicra.algorithms",
    "placebo_mask": "hicra.algorithms",
    "MASK_SOURCES": "hicra.algorithms",
    "amplification_mask": "hicra.algorithms",
    "policy_loss": "hicra.algorithms",
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
