"""Reasoning graphs from hidden states ("Topology of Reasoning", Minegishi et al. 2025, arXiv 2506.05744).

For one checkpoint: sample responses, take the hidden state at the last token of every sentence (layer `layer`,
the last by default; `hidden_states[0]` is the embedding output), cluster all sentences of the checkpoint with
k-means (scikit-learn), and read each response as a walk over cluster ids.

Per response (`walk_metrics`), after merging consecutive repeats (staying in one cluster is no step):
- n_nodes: distinct clusters visited;
- cycles: revisits, the steps that enter a cluster the walk has already visited ([0, 1, 0, 2, 1] has 2);
- diameter: the longest shortest path of the walk's undirected graph (clusters as nodes, transitions as edges;
  0 for a walk that never leaves its first cluster).

Per checkpoint: the small-world index omega (Telesford et al. 2011; `networkx.omega`: -1 lattice-like, 0
small-world, +1 random-like) of one pooled graph, the union of all walks' transitions (undirected, no self-loops),
largest connected component. omega needs >= 4 nodes and >= 2 edges for its reference graphs and a non-zero
clustering coefficient in the lattice reference; a graph that fails either gets null and the reason. Its
interval resamples problems (`small_world_interval`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from hicra.mechanistic.sentences import split_sentences

COLUMNS = ["step", "response_id", "problem_id", "n_sentences", "n_nodes", "cycles", "diameter", "small_world",
           "correct", "backtracking", "walk"]


@dataclass
class GraphsConfig:
    samples: int = 2  # responses per problem
    clusters: int = 16  # k of k-means (fewer when the checkpoint has fewer distinct sentence states)
    layer: int = -1  # index into hidden_states (0 = embeddings, -1 = last layer)
    niter: int = 1  # omega: rewirings per edge (random reference: 2 * niter)
    nrand: int = 2  # omega: reference graphs
    omega_boot: int = 100  # omega's interval: bootstrap replicates over problems (0: no interval)
    split: str = "lines"
    batch_size: int = 32
    seed: int = 0

    def validate(self) -> None:
        if self.samples < 1 or self.clusters < 1 or self.niter < 1 or self.nrand < 1 or self.batch_size < 1:
            raise ValueError("samples, clusters, niter, nrand and batch_size must be >= 1")
        if self.omega_boot < 0:
            raise ValueError("omega_boot must be >= 0")


def collapse(walk) -> list[int]:
    """The walk with consecutive repeats merged."""
    out: list[int] = []
    for c in walk:
        c = int(c)
        if not out or out[-1] != c:
            out.append(c)
    return out


def walk_graph(walk):
    """Undirected networkx graph of a walk: visited clusters as nodes, transitions as edges (no self-loops)."""
    import networkx as nx

    w = collapse(walk)
    g = nx.Graph()
    g.add_nodes_from(w)
    g.add_edges_from(zip(w[:-1], w[1:], strict=True))
    return g


def walk_metrics(walk) -> dict:
    """{"n_nodes", "cycles", "diameter"} of one walk over cluster ids (see the module docstring); an empty walk
    gives zeros."""
    import networkx as nx

    w = collapse(walk)
    if not w:
        return {"n_nodes": 0, "cycles": 0, "diameter": 0}
    seen: set[int] = set()
    cycles = 0
    for c in w:
        cycles += c in seen
        seen.add(c)
    return {"n_nodes": len(seen), "cycles": cycles, "diameter": int(nx.diameter(walk_graph(w)))}


def pooled_graph(walks):
    """Union of the walks' graphs (undirected, no self-loops)."""
    import networkx as nx

    g = nx.Graph()
    for w in walks:
        g = nx.compose(g, walk_graph(w))
    return g


def small_world(graph, niter: int = 1, nrand: int = 2, seed: int = 0) -> tuple[float | None, str | None]:
    """(omega of the largest connected component, None), or (None, the reason it is undefined)."""
    import networkx as nx

    if graph.number_of_nodes() == 0:
        return None, "empty graph"
    g = graph.subgraph(max(nx.connected_components(graph), key=len)).copy()
    if g.number_of_nodes() < 4 or g.number_of_edges() < 2:
        return None, (f"too small for omega's reference graphs ({g.number_of_nodes()} nodes, "
                      f"{g.number_of_edges()} edges; needs >= 4 and >= 2)")
    if g.number_of_edges() == g.number_of_nodes() * (g.number_of_nodes() - 1) // 2:
        return None, "complete graph: no rewiring possible, omega undefined"
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(nx.omega(g, niter=niter, nrand=nrand, seed=seed))
    except (nx.NetworkXError, ZeroDivisionError) as exc:
        return None, f"omega failed: {exc}"
    if not np.isfinite(value):
        return None, "no triangles in the graph or its lattice reference: clustering ratio undefined"
    return value, None


def small_world_interval(walks: list, problems: list, niter: int = 1, nrand: int = 2, n_boot: int = 100,
                         level: float = 0.95, seed: int = 0) -> dict:
    """Percentile-bootstrap interval of the pooled graph's omega, resampling problems (all walks of one problem are
    one unit, as for the per-response metrics). Each replicate pools the walks of the problems drawn with
    replacement (a problem drawn twice adds no edge) and computes omega with its own reference-graph seed, so the
    interval holds both the sampling of problems and omega's own randomness (Telesford et al. 2011 reference graphs).
    Caveat: a replicate holds only the distinct problems drawn (about 63% of them), so its graph is a sparser
    subgraph of the full one and the interval describes such subgraphs; it can sit to one side of the point
    estimate. Read it as the spread of omega over problem subsets, not as a calibrated interval.

    Returns {"interval": [low, high] or None, "n_boot", "n_null"}: the interval is None with fewer than 2 problems,
    without replicates, or when more than half the replicates have an undefined omega (`small_world`'s null cases);
    otherwise it is taken over the defined replicates and `n_null` says how many were left out. Cost: about
    0.1 s per replicate on a 16-cluster graph (2-core machine)."""
    if len(walks) != len(problems):
        raise ValueError(f"small_world_interval: {len(walks)} walks but {len(problems)} problem labels")
    groups: dict = {}
    for walk, problem in zip(walks, problems, strict=True):
        groups.setdefault(problem, []).append(walk)
    keys = list(groups)
    if n_boot < 1 or len(keys) < 2:
        return {"interval": None, "n_boot": 0, "n_null": 0}
    rng = np.random.default_rng([seed, 2])
    values = []
    for b in range(n_boot):
        drawn = {keys[i] for i in rng.integers(0, len(keys), size=len(keys))}
        value, _ = small_world(pooled_graph([w for k in drawn for w in groups[k]]), niter, nrand, seed + 1 + b)
        if value is not None:
            values.append(value)
    n_null = n_boot - len(values)
    if len(values) * 2 < n_boot:
        return {"interval": None, "n_boot": n_boot, "n_null": n_null}
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return {"interval": [float(lo), float(hi)], "n_boot": n_boot, "n_null": n_null}


def cluster_states(states: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means labels [S] of `states` [S, H] (scikit-learn, 4 restarts); k is cut to the number of distinct rows."""
    try:
        from sklearn.cluster import KMeans
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("hicra graphs needs scikit-learn: pip install 'hicra[mechanistic]'") from exc
    states = np.asarray(states, dtype=np.float64)
    if len(states) == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, min(k, len(np.unique(states, axis=0))))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(states).astype(np.int64)


def sentence_end_states(model, tokenizer, prompt_ids: list[list[int]], responses: list[str], split: str = "lines",
                        layer: int = -1, batch_size: int = 32) -> list[np.ndarray]:
    """Hidden states at the last token of every sentence: one float32 array [n_sentences, hidden] per response.

    Each response is encoded from its text (offsets from the fast tokenizer) after its prompt ids; the last token
    of a sentence is the last token that starts before the sentence's end. Batches are left-padded with position
    ids that count real tokens only (as the sampler does)."""
    import torch

    from hicra.lab.sampling import left_pad, positions

    items = []
    for ids, text in zip(prompt_ids, responses, strict=True):
        sents = split_sentences(text, split)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = np.asarray([s for s, _ in enc["offset_mapping"]], dtype=np.int64)
        ends = [int(np.searchsorted(starts, s.end, side="left")) - 1 for s in sents]
        items.append((list(ids) + list(enc["input_ids"]), len(ids), ends))
    out: list[np.ndarray] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    device = next(model.parameters()).device
    for c in range(0, len(items), batch_size):
        chunk = items[c:c + batch_size]
        ids, mask = left_pad([x[0] for x in chunk], pad)
        with torch.no_grad():
            res = model(input_ids=ids.to(device), attention_mask=mask.long().to(device),
                        position_ids=positions(mask).to(device), output_hidden_states=True, use_cache=False)
        hidden = res.hidden_states[layer].float().cpu()
        width = ids.shape[1]
        for row, (seq, n_prompt, ends) in enumerate(chunk):
            offset = width - len(seq) + n_prompt
            # (n_sentences, hidden size); a response without a sentence gives (0, hidden size)
            out.append(hidden[row, [offset + e for e in ends]].numpy().reshape(len(ends), hidden.shape[-1]))
    return out


def reasoning_graphs(policy, task, problems: list, tagger, cfg: GraphsConfig | None = None,
                     progress: bool = False) -> tuple[list[dict], dict]:
    """Sample `cfg.samples` responses per problem from `policy` (an `HFPolicy`: its model gives the hidden
    states), build the walks and their metrics. Returns (rows with the `COLUMNS` less "step", info with the
    pooled graph's size, omega or the reason it is null, and timings)."""
    cfg = cfg or GraphsConfig()
    cfg.validate()
    t0 = time.perf_counter()
    contexts = [(task.prompt(p), "") for p in problems for _ in range(cfg.samples)]
    owners = [(p, s) for p in problems for s in range(cfg.samples)]
    texts = policy.continue_texts(contexts, int(np.random.default_rng([cfg.seed, 1]).integers(2**31 - 1)))
    t_sample = time.perf_counter() - t0
    states = sentence_end_states(policy.model, policy.tokenizer, [policy.encode_prompt(p) for p, _ in contexts],
                                 texts, cfg.split, cfg.layer, cfg.batch_size)
    t_states = time.perf_counter() - t0 - t_sample
    flat = np.concatenate([s for s in states if len(s)]) if any(len(s) for s in states) else np.zeros((0, 1))
    labels = cluster_states(flat, cfg.clusters, cfg.seed)
    walks, pos = [], 0
    for s in states:
        walks.append(labels[pos:pos + len(s)].tolist())
        pos += len(s)
    graph = pooled_graph(walks)
    omega, reason = small_world(graph, cfg.niter, cfg.nrand, cfg.seed)
    pids = [task.problem_id(p) for p, _ in owners]
    t_omega = time.perf_counter()
    boot = (small_world_interval(walks, pids, cfg.niter, cfg.nrand, cfg.omega_boot, seed=cfg.seed)
            if omega is not None else {"interval": None, "n_boot": 0, "n_null": 0})
    t_omega = time.perf_counter() - t_omega
    rows = []
    for (problem, s), pid, text, walk in zip(owners, pids, texts, walks, strict=True):
        rows.append({"response_id": f"{pid}#{s}", "problem_id": pid, "n_sentences": len(walk), **walk_metrics(walk),
                     "small_world": omega, "correct": bool(task.check(problem, text).correct),
                     "backtracking": sum(sp.category == "backtracking" for sp in tagger.spans(text)),
                     "walk": walk})
    info = {"n_responses": len(rows), "n_sentences": int(len(flat)), "n_clusters": int(labels.max() + 1) if len(
        labels) else 0, "pooled_nodes": graph.number_of_nodes(), "pooled_edges": graph.number_of_edges(),
        "small_world": omega, "small_world_null_reason": reason, "small_world_interval": boot["interval"],
        "small_world_boot": {"n_boot": boot["n_boot"], "n_null": boot["n_null"]},
        "seconds": {"sample": t_sample, "hidden_states": t_states, "omega_interval": t_omega,
                    "total": time.perf_counter() - t0}}
    return rows, info


def summarize_step(rows: list[dict], info: dict, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Per-checkpoint summary for graphs.json: mean cycles / diameter / n_nodes over responses with percentile
    bootstrap intervals that resample problems (the `--samples` responses of one problem are one unit of evidence;
    `hicra.stats.cluster_bootstrap_ci`), the share of responses with a cycle, mean cycles of the responses with and
    without a backtracking phrase (lexicon category "backtracking"), and the pooled graph."""
    from hicra.stats import cluster_bootstrap_ci

    out = {k: v for k, v in info.items() if k != "seconds"}
    problems = [r["problem_id"] for r in rows]
    for name in ("cycles", "diameter", "n_nodes"):
        values = [r[name] for r in rows]
        if values:
            mean, lo, hi = cluster_bootstrap_ci(values, problems, level=level, n_boot=n_boot, seed=seed)
            out[name] = {"mean": mean, "interval": [lo, hi]}
        else:
            out[name] = {"mean": None, "interval": None}
    out["share_with_cycle"] = float(np.mean([r["cycles"] > 0 for r in rows])) if rows else None
    for name, group in (("with", [r for r in rows if r["backtracking"] > 0]),
                        ("without", [r for r in rows if r["backtracking"] == 0])):
        out[f"cycles_{name}_backtracking"] = float(np.mean([r["cycles"] for r in group])) if group else None
    return out


def config_dict(cfg: GraphsConfig) -> dict:
    return asdict(cfg)
