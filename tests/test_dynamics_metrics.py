"""Per-step metrics, each checked against an independent per-response / brute-force computation."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from reference import brute_pass_at_k

from hicra.dynamics.metrics import (
    METRIC_COLUMNS,
    REFERENCE_SEED,
    compute_metrics,
    mean_pass_at_k,
    pass_at_k,
    relative_perplexity,
    write_metrics,
)
from hicra.dynamics.records import ROLLOUT_SCHEMA, RolloutWriter, iter_steps, read_rollouts, rollout_row
from hicra.dynamics.synthetic import make_synthetic_run
from hicra.planning.metrics import procedural_conditional_entropy
from hicra.planning.tagger import PlanningTagger


def test_pass_at_k_matches_brute_force():
    cases = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]
    for n, c, k in cases:
        want = brute_pass_at_k(n, c, k)
        assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
        assert mean_pass_at_k([n], [c], k) == pytest.approx(want, abs=1e-12)
    # vectorised mean over problems of different n and c
    ns, cs = [8, 6, 5, 8], [0, 3, 5, 1]
    want = np.mean([brute_pass_at_k(n, c, 4) for n, c in zip(ns, cs, strict=True)])
    assert mean_pass_at_k(ns, cs, 4) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError):
        mean_pass_at_k([3], [1], 4)
    with pytest.raises(ValueError, match="differ in length"):
        mean_pass_at_k([3, 3], [1], 2)
    # many samples: exact binomials, no overflow (1 - C(500, 100) / C(1000, 100), by the product form in floats)
    want = 1.0 - math.prod((500 - i) / (1000 - i) for i in range(100))
    assert mean_pass_at_k([1000, 1000], [500, 500], 100) == pytest.approx(want, rel=1e-12)


def test_relative_perplexity():
    np.testing.assert_allclose(relative_perplexity([np.nan, 2.0, 1.0]), [np.nan, 1.0, 0.5])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("run") / "r", steps=6, prompts=3, group=4, segments=3,
                              exec_len=5, parts=2)


def reference_row(table: pa.Table, tagger: PlanningTagger, q: float) -> dict:
    """The same metrics computed response by response with plain Python/numpy."""
    rows = table.to_pylist()
    ent = np.concatenate([r["entropies"] for r in rows])
    lp = np.concatenate([r["logprobs"] for r in rows])
    pm = np.concatenate([r["planning_mask"] for r in rows]).astype(bool)
    order = np.argsort(-ent, kind="stable")
    high = np.zeros(ent.size, bool)
    high[order[: math.ceil(q * ent.size - 1e-9)]] = True
    groups: dict[str, list[bool]] = {}
    for r in rows:
        groups.setdefault(r["prompt_id"], []).append(r["correct"])
    counts = Counter(s.phrase for r in rows for s in tagger.spans(r["response"]))
    total = sum(counts.values())
    return {
        "accuracy": np.mean([r["correct"] for r in rows]),
        "pass_at_k": np.mean([brute_pass_at_k(len(g), sum(g), 4) for g in groups.values()]),
        "mean_length": np.mean([len(r["token_ids"]) for r in rows]),
        "entropy_all": ent.mean(), "entropy_planning": ent[pm].mean(), "entropy_execution": ent[~pm].mean(),
        "ppl_planning": math.exp(-lp[pm].mean()), "ppl_execution": math.exp(-lp[~pm].mean()),
        "planning_ratio": pm.mean(),
        "high_entropy_planning_share": pm[high].mean(), "planning_high_entropy_share": high[pm].mean(),
        "semantic_entropy": -sum(c / total * math.log(c / total) for c in counts.values()),
        "procedural_cond_entropy": procedural_conditional_entropy([r["response"] for r in rows], tagger),
        "n_errors_execution": sum(r["error_type"] == "execution" for r in rows),
        "n_errors_planning": sum(r["error_type"] == "planning" for r in rows),
        "errors_execution_share": np.mean([r["error_type"] == "execution" for r in rows]),
        # the reference class (verdict v3): as many tokens as planning tokens, drawn without replacement from the
        # non-planning tokens in row order by a generator seeded with (REFERENCE_SEED, step)
        "ppl_reference": math.exp(-lp[~pm][np.random.default_rng([REFERENCE_SEED, rows[0]["step"]]).choice(
            int((~pm).sum()), int(pm.sum()), replace=False)].mean()),
    }


def test_metrics_match_reference(run, tmp_path):
    tagger = PlanningTagger("paper")
    df = compute_metrics(run, tagger=tagger, quantiles=(0.3, 0.2), ks=(1, 2))
    assert list(df.columns[: len(METRIC_COLUMNS)]) == list(METRIC_COLUMNS)
    assert df["step"].tolist() == list(range(6))
    table = read_rollouts(run)
    first_ppl = {}
    for step in range(6):
        part = table.filter(pa.compute.equal(table.column("step"), step))
        want = reference_row(part, tagger, q=0.3)
        got = df[df.step == step].iloc[0]
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), (step, key)
        assert got["pass_at_1"] == pytest.approx(want["accuracy"])
        assert got["high_entropy_planning_share_q30"] == got["high_entropy_planning_share"]
        if step == 0:
            first_ppl = {c: want[f"ppl_{c}"] for c in ("planning", "execution")}
        if step == 0:
            first_ppl["reference"] = want["ppl_reference"]
        for c in ("planning", "execution", "reference"):
            assert got[f"rel_ppl_{c}"] == pytest.approx(want[f"ppl_{c}"] / first_ppl[c], rel=1e-5)
        # per-step intervals bracket the point values
        assert got["accuracy_low"] <= got["accuracy"] <= got["accuracy_high"]
        assert got["semantic_entropy_low"] <= got["semantic_entropy_high"]
    assert df["n_errors_format"].tolist() == [0] * 6 and df["errors_format_share"].tolist() == [0.0] * 6
    assert df["strategy_entropy"].isna().all()  # the synthetic run carries no strategy labels
    pq_path, csv_path = write_metrics(df, tmp_path)
    import pandas as pd

    back = pd.read_parquet(pq_path)
    assert back["semantic_entropy"].tolist() == pytest.approx(df["semantic_entropy"].tolist())
    assert pd.read_csv(csv_path)["step"].tolist() == list(range(6))


def test_missing_logprobs_entropies_and_error_labels_give_nulls(tmp_path):
    rows = [{"prompt_id": "a", "sample_idx": i, "response": "let me verify 1 + 1", "token_ids": [1, 2, 3, 4],
             "reward": 1.0, "correct": i == 0, "planning_mask": [True, True, True, False]} for i in range(2)]
    w = RolloutWriter(tmp_path)
    w.write_step(0, rows)
    w.write_step(1, rows)
    df = compute_metrics(tmp_path, tagger=PlanningTagger("paper"))
    for col in ("entropy_all", "ppl_planning", "rel_ppl_execution", "high_entropy_planning_share",
                "n_errors_execution", "errors_planning_share", "ppl_reference", "strategy_entropy"):
        assert df[col].isna().all(), col
    assert df["planning_ratio"].tolist() == [0.75, 0.75]
    assert df["pass_at_k"].tolist() == [1.0, 1.0] and df["accuracy"].tolist() == [0.5, 0.5]


def test_planning_masks_recomputed_with_tokenizer(tmp_path):
    from hicra.lab.model import train_tokenizer

    texts = ["let me verify the sum 12 + 30 = 42", "we can see that 7 * 6 = 42, so the answer is 42",
             "first we need to add 3 and 4", "break down the problem: 5 - 2 = 3"] * 4
    tok = train_tokenizer(texts, vocab_size=300)
    tagger = PlanningTagger("paper", tokenizer=tok)
    rows, masks = [], []
    for i, text in enumerate(texts):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        masks.append(tagger.token_mask(text))  # text path: tokenizer offsets
        rows.append({"prompt_id": str(i // 4), "sample_idx": i % 4, "response": text, "token_ids": ids,
                     "entropies": np.linspace(0, 1, len(ids)), "reward": 0.0, "correct": False})
    RolloutWriter(tmp_path).write_step(0, rows)
    df = compute_metrics(tmp_path, tagger=tagger)
    flat = np.concatenate(masks)
    assert 0 < flat.mean() < 1
    assert df["planning_ratio"].iloc[0] == pytest.approx(flat.mean())
    ent = np.concatenate([r["entropies"] for r in rows])
    assert df["entropy_planning"].iloc[0] == pytest.approx(ent[flat].mean())
    # without a tokenizer the token-level planning columns are unknown, the text-level ones are not
    df2 = compute_metrics(tmp_path, tagger=PlanningTagger("paper"))
    assert np.isnan(df2["planning_ratio"].iloc[0]) and df2["semantic_entropy"].iloc[0] > 0


def test_schema_constant_is_the_design_row():
    assert [f.name for f in ROLLOUT_SCHEMA] == [
        "step", "prompt_id", "sample_idx", "prompt", "response", "token_ids", "logprobs", "entropies",
        "planning_mask", "reward", "correct", "truncated", "error_type", "strategy"]


def test_strategy_entropy_and_format_phrase_exclusion(tmp_path):
    """Strategy labels: each response weighs 1, split over its "+"-joined labels; null labels are left out.
    A phrase in >= 90% of the run's responses ("so the answer is") is left out of semantic_entropy_excl_format."""
    texts = ["let me verify 2 + 2 = 4, so the answer is 4", "first we need to add, so the answer is 5",
             "let me verify again, so the answer is 6", "alternatively we could guess, so the answer is 7"]
    labels = ["guess", "add+check", None, "guess"]
    rows = [{"prompt_id": str(i // 2), "sample_idx": i % 2, "response": t, "token_ids": [1, 2, 3], "reward": 0.0,
             "correct": False, "strategy": lab} for i, (t, lab) in enumerate(zip(texts, labels, strict=True))]
    w = RolloutWriter(tmp_path)
    for step in range(2):
        w.write_step(step, rows)
    tagger = PlanningTagger("paper")
    df = compute_metrics(tmp_path, tagger=tagger)
    # labels: guess 1 + 1, add 0.5, check 0.5 over three labelled responses
    p = np.array([2, 0.5, 0.5]) / 3
    assert df["strategy_entropy"].iloc[0] == pytest.approx(-(p * np.log(p)).sum())
    assert df["strategy_unparsed_share"].iloc[0] == pytest.approx(0.25)
    # H(S) - H(S | prompt), Miller-Madow, whole labels: prompt 0 holds guess and add+check, prompt 1 guess
    j = np.array([2, 1]) / 3
    h = -(j * np.log(j)).sum() + (2 - 1) / (2 * 3)
    within0 = math.log(2) + (2 - 1) / (2 * 2)
    assert df["strategy_information"].iloc[0] == pytest.approx(h - 2 * within0 / 3)
    assert df.attrs["format_phrases"] == ["so"]  # the paper lexicon matches "so" inside "so the answer is"
    counts = Counter(s.phrase for t in texts for s in tagger.spans(t) if s.phrase != "so")
    q = np.array(list(counts.values()), float) / sum(counts.values())
    assert df["semantic_entropy_excl_format"].iloc[0] == pytest.approx(-(q * np.log(q)).sum())
    assert df["semantic_entropy_excl_format"].iloc[0] != pytest.approx(df["semantic_entropy"].iloc[0])


def test_strategy_information_separates_choosing_by_prompt_from_one_mix_for_all():
    """H(S) - H(S | prompt) with Miller-Madow entropies: deterministic per prompt gives H(S) (+ the overall
    correction), one mix drawn for every prompt gives ~0 on average where the plug-in estimate would show ~+0.06
    from 8-response groups; with strata (families with their own labels) the family adds nothing."""
    import math

    from hicra.dynamics.metrics import strategy_information
    from hicra.dynamics.phases import entropy_rows

    n_prompts, k = 40, 8
    det = np.zeros((n_prompts, 2))
    det[: n_prompts // 2, 0] = k
    det[n_prompts // 2 :, 1] = k
    out = strategy_information(det)
    assert out["strategy_information"] == pytest.approx(math.log(2) + 1 / (2 * n_prompts * k))
    assert out["strategy_entropy_within"] == 0.0

    rng = np.random.default_rng(0)
    corrected, plug_in = [], []
    for _ in range(200):
        a = rng.binomial(k, 0.5, n_prompts)
        g = np.stack([a, k - a], axis=1).astype(float)
        corrected.append(strategy_information(g)["strategy_information"])
        plug_in.append(entropy_rows(g.sum(axis=0, keepdims=True))[0] - entropy_rows(g).mean())
    assert abs(np.mean(corrected)) < 0.01 and np.mean(plug_in) > 0.04

    # two families, each prompt draws its family's mix: the unconditional figure is the family's ln 2
    a = rng.binomial(k, 0.5, n_prompts)
    fam = np.arange(n_prompts) % 2
    g = np.zeros((n_prompts, 4))
    g[fam == 0, 0], g[fam == 0, 1] = a[fam == 0], k - a[fam == 0]
    g[fam == 1, 2], g[fam == 1, 3] = a[fam == 1], k - a[fam == 1]
    assert strategy_information(g)["strategy_information"] > 0.6
    weights = np.random.default_rng(1).multinomial(n_prompts, [1 / n_prompts] * n_prompts, size=200).astype(float)
    cond = strategy_information(g, weights, strata=fam)
    assert abs(cond["strategy_information"]) < 0.1
    assert cond["strategy_information_low"] <= cond["strategy_information"] <= cond["strategy_information_high"]
    assert strategy_information(np.zeros((3, 2))) == {}


def test_strategy_information_counts_multi_part_responses_once_and_its_interval_is_signed():
    """A multi-part policy that writes the same pair of strategies for every prompt carries no information, in
    either part order (whole labels, parts sorted); split 1/k weights would have read it as -0.06 nats. Under a
    null the corrected figure is centred on 0, so its interval's lower end goes below 0 (no entropy floor)."""
    from hicra.dynamics.metrics import group_rows, joint_strategy_counts, strategy_information

    labels = ["pairing+split", "split+pairing"] * 64  # 16 prompts x 8, the part order follows the prompt
    names, joint = joint_strategy_counts(labels + [None])
    assert names == ["pairing+split"] and joint[-1].sum() == 0 and joint[:-1].sum() == 128
    groups = group_rows(joint[:-1], np.repeat(np.arange(16), 8), 16)
    assert strategy_information(groups)["strategy_information"] == 0.0

    rng = np.random.default_rng(0)
    lows = []
    for _ in range(40):
        a = rng.binomial(8, 0.5, 16).astype(float)
        weights = rng.multinomial(16, [1 / 16] * 16, size=200).astype(float)
        lows.append(strategy_information(np.stack([a, 8 - a], axis=1), weights)["strategy_information_low"])
    assert min(lows) < 0


def _assert_unlabelled_run_exits_2(mod, tmp_path, capsys, monkeypatch):
    """A benchmark's `main` on a run without strategy labels: exit code 2 and one line naming the run."""
    import sys

    w = RolloutWriter(tmp_path / "bare")
    w.write_step(0, [{"prompt_id": "a", "sample_idx": 0, "response": "x", "token_ids": [1], "reward": 0.0,
                      "correct": False}])
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path / "bare")])
    assert mod.main() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bare" in err and "no strategy labels" in err


def test_choice_by_prompt_benchmark_reads_choice_per_family(tmp_path, capsys, monkeypatch, benchmark_script):
    """benchmarks/choice_by_prompt.py: a series policy that goes from one mix for every prompt to one strategy per
    prompt rises in its `series` column by about ln 2, while a product family that always splits stays at 0; the
    pooled figure also counts the family. A run without labels: one line, exit code 2."""
    import sys

    mod = benchmark_script("choice_by_prompt")
    w = RolloutWriter(tmp_path / "run")
    for step in range(10):
        rows = []
        for p in range(8):
            for i in range(8):
                if p < 4:  # series: early half/half in every group, late one strategy per prompt
                    label = ("one-by-one" if i % 2 else "pairing") if step < 5 else (
                        "one-by-one" if p % 2 else "pairing")
                    pid = f"series:{p}:1:3"
                else:
                    label, pid = "split", f"product:{p}:13"
                rows.append({"prompt_id": pid, "sample_idx": i, "response": "x", "token_ids": [1], "reward": 0.0,
                             "correct": False, "strategy": label})
        w.write_step(step, rows)
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path / "run")])
    assert mod.main() == 0
    out = capsys.readouterr().out
    series = next(line for line in out.splitlines() if line.startswith("series "))
    assert "up in 1 of 1" in series and float(series.split("mean ")[1].split(",")[0]) > 0.6
    product = next(line for line in out.splitlines() if line.startswith("product "))
    assert "mean +0.0000" in product or "mean -0.0000" in product
    _assert_unlabelled_run_exits_2(mod, tmp_path, capsys, monkeypatch)


def _labelled_run(path, labels_per_step):
    w = RolloutWriter(path)
    for step, labels in enumerate(labels_per_step):
        w.write_step(step, [rollout_row(prompt_id=str(i // 2), sample_idx=i % 2, response="x", token_ids=[1],
                                        reward=0.0, correct=False, strategy=lab) for i, lab in enumerate(labels)])


def test_labels_with_nothing_parsed_give_no_strategy_entropy(tmp_path):
    """A step whose labels are all "" or "+" has no parsed label: strategy_entropy is null (was 0.0 with the
    interval [0, 0]), as for all-null labels; its unparsed share is 1."""
    _labelled_run(tmp_path, [["", "+", "", "+"], [None] * 4, ["a", "b", "a", ""]])
    df = compute_metrics(tmp_path)
    for col in ("strategy_entropy", "strategy_entropy_low", "strategy_entropy_high", "strategy_information"):
        assert np.isnan(df[col].iloc[0]) and np.isnan(df[col].iloc[1]), col
    assert df["strategy_unparsed_share"].iloc[0] == 1.0
    p = np.array([2, 1]) / 3
    assert df["strategy_entropy"].iloc[2] == pytest.approx(-(p * np.log(p)).sum())
    assert df["strategy_unparsed_share"].iloc[2] == pytest.approx(0.25)


def test_integer_strategy_codes_are_labels_and_other_types_are_refused(tmp_path):
    """An integer `strategy` column is read as label codes (3 -> "3"): the same metrics as the same codes
    written as text. A float or bool column is an error naming file and field."""
    import pyarrow.parquet as pq

    from hicra.dynamics.records import rollout_path
    from hicra.errors import InputError

    codes = [[0, 1, 0, 2], [1, 1, 0, 0]]
    _labelled_run(tmp_path / "text", [[str(c) for c in step] for step in codes])
    _labelled_run(tmp_path / "ints", codes)  # rollout_row writes an integer code as its text
    raw = tmp_path / "raw"
    _labelled_run(raw, [["x"] * 4] * 2)
    for step, step_codes in enumerate(codes):  # a foreign writer's int64 column
        path = rollout_path(raw, step)
        t = pq.read_table(path)
        t = t.set_column(t.column_names.index("strategy"), "strategy", pa.array(step_codes, pa.int64()))
        pq.write_table(t, path)
    want = compute_metrics(tmp_path / "text")["strategy_entropy"].to_numpy()
    assert want[0] == pytest.approx(-(np.array([.5, .25, .25]) * np.log([.5, .25, .25])).sum())
    for run in ("ints", "raw"):
        assert compute_metrics(tmp_path / run)["strategy_entropy"].to_numpy() == pytest.approx(want)
    path = rollout_path(raw, 1)
    t = pq.read_table(path)
    t = t.set_column(t.column_names.index("strategy"), "strategy", pa.array([1.0, 1.0, 0.0, 0.5], pa.float64()))
    pq.write_table(t, path)
    with pytest.raises(InputError) as exc:
        compute_metrics(raw)
    assert str(exc.value) == f"{path}, field 'strategy': has type double: strategy labels are strings (or integer " \
        "codes)"


def test_family_entropy_benchmark_separates_a_rising_family_from_a_collapsing_one(tmp_path, capsys, monkeypatch,
                                                                                 benchmark_script):
    """benchmarks/family_entropy.py: a series family whose strategy mix widens step by step (one strategy -> half
    and half) and a product family that narrows (half and half -> one) read as a detected rise and a detected fall
    in their own columns, `in family` is H(strategy | family) computed here independently, and a run without
    labels gives one line and exit code 2."""
    import math
    import sys

    mod = benchmark_script("family_entropy")
    w = RolloutWriter(tmp_path / "run")
    steps, n = 12, 32
    for step in range(steps):
        k = round(n / 2 * step / (steps - 1))  # responses on the second strategy: 0 -> n/2 (series), n/2 -> 0 (product)
        rows = [{"prompt_id": f"series:{i % 4}:1:3", "strategy": "pairing" if i < k else "one-by-one"}
                for i in range(n)]
        rows += [{"prompt_id": f"product:{i % 4}:13", "strategy": "round-up" if i < n // 2 - k else "split"}
                 for i in range(n)]
        w.write_step(step, [{**r, "sample_idx": 0, "response": "x", "token_ids": [1], "reward": 0.0,
                             "correct": False} for r in rows])
    table = next(t for s, t in iter_steps(tmp_path / "run") if s == 3)
    h = mod.step_entropies(table)
    k = round(n / 2 * 3 / (steps - 1))
    hs = -sum(p * math.log(p) for p in (k / n, 1 - k / n) if p > 0)
    hp = -sum(p * math.log(p) for p in ((n // 2 - k) / n, 1 - (n // 2 - k) / n) if p > 0)
    assert h["series"] == pytest.approx(hs) and h["product"] == pytest.approx(hp)
    assert h["in family"] == pytest.approx((hs + hp) / 2)
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path / "run")])
    assert mod.main() == 0
    out = capsys.readouterr().out
    summary = {line.split()[0]: line for line in out.splitlines() if "detected in" in line}
    assert "rise detected in 1 of 1, fall detected in 0" in summary["series"]
    assert "rise detected in 0 of 1, fall detected in 1" in summary["product"]
    _assert_unlabelled_run_exits_2(mod, tmp_path, capsys, monkeypatch)


def test_error_labels_count_failed_responses_only(tmp_path):
    """n_errors_<type> counts failed responses (vocab): a label on a correct response is counted nowhere."""
    rows = [{"prompt_id": "a", "sample_idx": i, "response": "1 + 1 = 2", "token_ids": [1, 2, 3], "reward": 0.0,
             "correct": ok, "error_type": label}
            for i, (ok, label) in enumerate([(True, "planning"), (False, "planning"), (False, "execution"),
                                             (False, None)])]
    w = RolloutWriter(tmp_path)
    w.write_step(0, rows)
    w.write_step(1, rows)
    df = compute_metrics(tmp_path, tagger=PlanningTagger("paper"))
    assert df["n_errors_planning"].tolist() == [1, 1] and df["n_errors_execution"].tolist() == [1, 1]
    assert df["errors_planning_share"].tolist() == [0.25, 0.25]


def test_responses_without_a_mask_are_counted_and_noted(tmp_path):
    """Some rows of a step without planning_mask and no tokenizer: the planning metrics use the other rows, and
    `n_unmasked_responses` and the summary's notes say so (before: silently)."""
    from hicra.dynamics.analyze import analyze_run

    w = RolloutWriter(tmp_path / "run")
    for step in range(3):
        w.write_step(step, [{"prompt_id": "a", "sample_idx": i, "response": "let me verify 1 + 1",
                             "token_ids": [1, 2, 3, 4], "reward": 1.0, "correct": i == 0,
                             "planning_mask": [True, False, False, False] if i == 0 else None} for i in range(4)])
    summary = analyze_run(tmp_path / "run", tmp_path / "out", report=False)
    import pandas as pd

    df = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert df["n_unmasked_responses"].tolist() == [3, 3, 3] and df["planning_ratio"].tolist() == [0.25] * 3
    assert any("absent from 9 of 12 responses" in n and "in 3 step(s) computed from the other responses only" in n
               for n in summary["notes"]), summary["notes"]


def test_a_prompt_drawn_twice_in_a_step_is_counted_and_noted(tmp_path):
    """Two groups of one prompt_id in a step, each numbered 0..3: read as one group of 8 (pass@k over 8 samples),
    and `n_repeated_keys` and the summary's notes say so (before: silently)."""
    from hicra.dynamics.analyze import analyze_run

    w = RolloutWriter(tmp_path / "run")
    for step in range(2):
        rows = [{"prompt_id": "a", "sample_idx": i % 4, "response": "1 + 1 = 2", "token_ids": [1, 2, 3],
                 "reward": float(i == 0), "correct": i == 0} for i in range(8 if step == 1 else 4)]
        w.write_step(step, rows)
    summary = analyze_run(tmp_path / "run", tmp_path / "out", report=False)
    import pandas as pd

    df = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert df["n_repeated_keys"].tolist() == [0, 4]
    assert df["group_size"].tolist() == [4, 8]
    assert any(n.startswith("4 response(s) repeat a (prompt_id, sample_idx)") and "in 1 step(s)" in n
               for n in summary["notes"]), summary["notes"]


@pytest.mark.parametrize("field,value,message", [
    ("tokenizer", 5, "must be a string or null, got int 5"),
    ("lexicon", ["paper"], "must be a string or null, got list"),
    ("config", "oops", "must be an object or null, got str"),
])
def test_run_json_fields_of_the_wrong_type_are_named(tmp_path, field, value, message):
    import json

    from hicra.dynamics.analyze import analyze_run
    from hicra.errors import InputError

    make_synthetic_run(tmp_path / "r", steps=2, prompts=2, group=2, segments=2, exec_len=3)
    info = json.loads((tmp_path / "r" / "run.json").read_text()) if (tmp_path / "r" / "run.json").exists() else {}
    (tmp_path / "r" / "run.json").write_text(json.dumps({**info, field: value}))
    with pytest.raises(InputError) as exc:
        analyze_run(tmp_path / "r", tmp_path / "out", report=False)
    assert exc.value.field == field and exc.value.path == str(tmp_path / "r" / "run.json")
    assert message in str(exc.value)


def test_a_run_json_tokenizer_that_does_not_load_is_noted(tmp_path):
    """run.json names a tokenizer folder that holds no tokenizer: the analysis goes on without it, as before, and
    now says why the planning masks were not recomputed."""
    import json

    from hicra.dynamics.analyze import analyze_run

    run = tmp_path / "run"
    w = RolloutWriter(run)
    for step in range(2):
        w.write_step(step, [{"prompt_id": "a", "sample_idx": i, "response": "let me verify 1 + 1",
                             "token_ids": [1, 2, 3, 4], "reward": 1.0, "correct": i == 0} for i in range(2)])
    (run / "tok").mkdir()
    (run / "run.json").write_text(json.dumps({"tokenizer": "tok"}))
    summary = analyze_run(run, tmp_path / "out", report=False)
    assert any(n.startswith("run.json's tokenizer did not load (") for n in summary["notes"]), summary["notes"]


def test_response_weighted_perplexity_against_a_loop():
    from hicra.dynamics.metrics import response_weighted_perplexity

    rng = np.random.default_rng(0)
    lengths = np.array([3, 0, 5, 2, 4])
    lp = -rng.exponential(1.0, lengths.sum())
    sel = rng.random(lengths.sum()) < 0.6
    sel[-4:] = False  # the last response has no selected token: left out
    means, pos = [], 0
    for n in lengths:
        picked = [-lp[i] for i in range(pos, pos + n) if sel[i]]
        if picked:
            means.append(sum(picked) / len(picked))
        pos += n
    assert response_weighted_perplexity(lp, sel, lengths) == pytest.approx(float(np.exp(np.mean(means))))
    assert response_weighted_perplexity(lp, np.zeros_like(sel), lengths) is None


def test_a_consolidation_from_the_length_mix_alone_is_flagged(tmp_path):
    """The verdict's pooled perplexity read a change of the response-length mix as execution consolidating
    (`execution-first` on this simulation, nothing planted; a reviewer's find). The verdict is unchanged (its rules
    are pre-registered), but the evidence now carries the same test on the response-weighted perplexity, and the
    analysis says when only the pooled one falls. A planted consolidation is seen both ways, with no such note."""
    import pandas as pd

    from hicra.dynamics.analyze import analyze_run
    from hicra.dynamics.synthetic import make_length_mix_run, make_synthetic_run

    make_length_mix_run(tmp_path / "mix", seed=1)
    summary = analyze_run(tmp_path / "mix", tmp_path / "mix", report=False)
    phases, m = summary["phases"], pd.read_parquet(tmp_path / "mix" / "metrics.parquet")
    assert phases["order"] == "execution-first" and m["rel_ppl_execution"].iloc[-1] < 0.8
    assert 0.95 < m["rel_ppl_execution_rw"].min() and m["rel_ppl_execution_rw"].max() < 1.05
    check = phases["evidence"]["execution_response_weighted"]
    assert check["tested"] and not check["consolidates"] and check["mean_length"] == [66.0, 234.5]
    assert any("may come from a change in the mix of response lengths (mean length 66 -> 234" in n
               for n in summary["notes"])
    make_synthetic_run(tmp_path / "planted", seed=0)
    summary = analyze_run(tmp_path / "planted", tmp_path / "planted", report=False)
    assert summary["phases"]["order"] == "execution-first"
    assert summary["phases"]["evidence"]["execution_response_weighted"]["consolidates"]
    assert not any("mix of response lengths" in n for n in summary["notes"])


def test_length_mix_benchmark_counts_orders_fires_and_flags(benchmark_script, monkeypatch, capsys):
    mod = benchmark_script("length_mix")
    monkeypatch.setattr("sys.argv", ["length_mix.py", "1", "--seed-offset", "1"])
    mod.main()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("seed 1: verdict consolidation-only, order execution-first; pooled execution test fires")
    assert out[-1] == ("1 seeds: order execution-first 1; the pooled execution test fires in 1; the "
                       "response-weighted check flags 1 of them")
