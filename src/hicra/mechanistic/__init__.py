"""Mechanistic views of a policy over training (docs/mechanistic.md).

- `anchors`: counterfactual sentence importance (resample after / instead of each sentence; arXiv 2506.19143);
- `graphs`: hidden-state reasoning graphs, their cycles, diameter and small-world index (arXiv 2506.05744);
- `sentences`: sentence split and the planning / execution / other classes;
- `tasks`, `policy`: the task and sampling interfaces they use (lab tasks, math-verify, any HF causal LM);
- `run`: walking a run directory's checkpoints; `report`: figures and report.html sections; `cli`: the verbs.
"""
