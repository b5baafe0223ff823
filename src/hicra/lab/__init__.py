"""The CPU lab: synthetic reasoning tasks with exact error types, a tiny HF model, warm start and an RL loop.

Submodules: `tasks` (generators + checkers), `model` (tokenizer + tiny causal LM), `sft` (warm start),
`rl` (the RL loop), `presets` (named settings), `cli` (the `hicra lab` verb).
"""
