"""The lab RL loop: rollout records, algorithm masks, exact resume (also after SIGKILL), same seed same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hicra.lab.rl import RLConfig, run_rl, token_advantages
from hicra.lab.sft import WarmStartConfig, warm_start

# one worker under pytest-xdist (make test: --dist loadgroup) so the module fixture is built once
pytestmark = pytest.mark.xdist_group("lab_rl")

TASKS = [{"family": "series", "max_start": 9, "max_step": 2, "counts": [2, 3]}]
BASE = dict(tasks=TASKS, steps=4, prompts_per_step=3, group_size=4, max_new_tokens=48, n_eval=6, n_probe=3,
            eval_every=2, heldout_share=0.3, checkpoint_every=1, minibatches=2, lr=2e-3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny warm start on an easy task, so rollouts get mixed rewards (non-zero advantages)."""
    cfg = WarmStartConfig(tasks=TASKS, n_train=1500, vocab_size=300, size="1m", epochs=6, batch_size=16,
                          lr=5e-3, execution_noise=0.05, strategy_prior="blind-common", planning_noise=0.2,
                          heldout_share=0.3, max_response_tokens=64, seed=0)
    root = tmp_path_factory.mktemp("ws")
    path = warm_start(cfg, root, progress=False, log=lambda *a: None)
    assert warm_start(cfg, root, progress=False, log=lambda *a: None) == path  # second call hits the cache
    return path


def _run(model_dir, run_dir, **kw):
    cfg = RLConfig(**{**BASE, **kw})
    return run_rl(cfg, model_dir, run_dir, progress=False, log=lambda *a: None)


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "model" / "model.safetensors"))


def _rollouts(run_dir):
    from hicra.dynamics.records import iter_steps

    return [(step, table.to_pylist()) for step, table in iter_steps(run_dir)]


def test_records_schema_and_contents(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.dynamics.records import read_run_info
    from hicra.lab.sampling import sequence_logprobs
    from hicra.lab.tasks import TaskMix
    from hicra.planning.lexicon import Lexicon
    from hicra.planning.tagger import PlanningTagger

    # 8 prompts: with the fixture's 3, step 0 drew three problems the warm start got all wrong on one machine
    out = _run(model_dir, tmp_path / "run", steps=1, prompts_per_step=8)
    info = read_run_info(tmp_path / "run")
    assert info["algorithm"] == "hicra" and info["config"]["steps"] == 1
    # the lexicon mined and frozen with the warm start is the run's lexicon
    assert info["lexicon"] == "lexicon.json" and info["tokenizer"] == "tokenizer"  # relative: the run can move
    assert Lexicon.load(tmp_path / "run" / info["lexicon"]) == Lexicon.load(Path(model_dir) / "lexicon.json")
    steps = _rollouts(tmp_path / "run")
    assert [s for s, _ in steps] == [0]
    rows = steps[0][1]
    assert len(rows) == 8 * 4
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)  # step-0 rollouts came from the warm start
    task = TaskMix(TASKS)
    tagger = PlanningTagger(Lexicon.load(tmp_path / "run" / info["lexicon"]), tok)
    rewards = [r["reward"] for r in rows]
    assert 0 < sum(rewards) < len(rewards), "fixture should give mixed rewards"
    for r in rows:
        ids = r["token_ids"]
        assert len(r["logprobs"]) == len(r["entropies"]) == len(r["planning_mask"]) == len(ids) > 0
        assert r["response"] == tok.decode(ids, skip_special_tokens=True)
        assert r["truncated"] == (ids[-1] != tok.eos_token_id)
        problem = task.problem(r["prompt_id"])
        assert problem.question == r["prompt"]
        check = task.check(problem, r["response"])
        assert (r["correct"], r["error_type"], r["reward"], r["strategy"]) == (
            check.correct, check.error_type, check.reward, check.strategy)
        assert r["planning_mask"] == tagger.token_mask(ids).tolist()
        # behaviour log-probs equal a teacher-forced recomputation under the warm-start model
        p = torch.tensor([tok(r["prompt"] + "\n")["input_ids"]])
        lp = sequence_logprobs(model, p, torch.ones_like(p, dtype=torch.bool), torch.tensor([ids]),
                               torch.ones((1, len(ids)), dtype=torch.bool))
        np.testing.assert_allclose(lp[0].detach().numpy(), r["logprobs"], atol=1e-4)
    # the mechanism check in the log, recomputed from the rollout rows (advantage = reward - its group's mean)
    log = out["log"][0]
    mass = [1 - np.exp(np.array(r["logprobs"])) for r in rows]
    plan = [np.array(r["planning_mask"], bool) for r in rows]
    adv = [abs(r["reward"] - np.mean([x["reward"] for x in rows[i // 4 * 4: i // 4 * 4 + 4]]))
           for i, r in enumerate(rows)]
    total = sum(m.sum() for m in mass)
    assert log["planning_gradient_mass_share"] == pytest.approx(sum(m[p].sum() for m, p in zip(mass, plan, strict=True)) / total,
                                                                rel=1e-4)
    assert log["planning_update_share"] == pytest.approx(
        sum(a * m[p].sum() for a, m, p in zip(adv, mass, plan, strict=True)) / sum(a * m.sum() for a, m in zip(adv, mass, strict=True)),
        rel=1e-4)
    assert log["update_change"] == pytest.approx(0.2 * log["planning_update_share"], rel=1e-5)  # hicra, alpha 0.2
    assert set(out["eval"]) == {"warm_start", "final", "warm_start_sampled", "final_sampled", "heldout_ids"}
    # held-out problems are disjoint from every training draw, and listed
    held = set(out["eval"]["heldout_ids"])
    assert len(held) == 6 and not held & {r["prompt_id"] for r in rows}


def test_a_problem_drawn_twice_in_a_step_continues_its_sample_numbering(model_dir, tmp_path):
    """(prompt_id, sample_idx) is unique in a step, as the records' contract has it: a problem drawn twice gets
    sample_idx 0..2G-1 (before: 0..G-1 twice). 30 draws from the fixture's small universe must repeat one."""
    _run(model_dir, tmp_path / "run", steps=1, prompts_per_step=30, group_size=2, max_new_tokens=16)
    drawn = {}
    for r in _rollouts(tmp_path / "run")[0][1]:
        drawn.setdefault(r["prompt_id"], []).append(r["sample_idx"])
    assert max(len(idx) for idx in drawn.values()) > 2, "the draw should hold a problem twice"
    assert all(idx == list(range(len(idx))) for idx in drawn.values()), drawn


def test_eval_curve_probes_and_snapshots(model_dir, tmp_path):
    out = _run(model_dir, tmp_path / "run", steps=4, checkpoint_every=2)
    run = tmp_path / "run"
    curve = [json.loads(x) for x in (run / "eval_curve.jsonl").read_text().splitlines()]
    probes = [json.loads(x) for x in (run / "probes.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [r["step"] for r in probes] == [0, 2, 4]
    assert curve[0]["accuracy"] == out["eval"]["warm_start"]["accuracy"]
    assert curve[-1]["accuracy"] == out["eval"]["final"]["accuracy"]  # same greedy decode of the same weights
    for r in probes:
        assert 0 <= r["exec_probe_line_accuracy"] <= 1 and 0 <= r["plan_probe_cheapest"] <= r["plan_probe_solved"] <= 1
    snaps = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert snaps == ["step_000000", "step_000002", "step_000004"]
    from transformers import AutoModelForCausalLM

    warm = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    snap0 = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "step_000000").state_dict()
    assert all(torch.equal(warm[k], snap0[k]) for k in warm)  # step 0 is the warm start, saved before any update

    final = _weights(run)
    snap = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "step_000004").state_dict()
    assert all(torch.equal(final[k], snap[k]) for k in final)


def test_heldout_strategies_at_both_ends_leave_training_unchanged(model_dir, tmp_path, benchmark_script):
    """`strategy_k`: eval.json gains the warm start's and the trained policy's own strategy choices on the held-out
    problems (equal to `heldout_strategies` of each model, seed + 5) and their `strategy_change`, bootstrapped at
    the run's seed (what benchmarks/bootstrap_spread.py recomputes from the run directory); the run's training is
    the same as without them (the samples come from their own generator). Resuming a run started without them is
    refused, naming eval.json's field."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.probes import heldout_strategies, heldout_strategy_change
    from hicra.lab.tasks import TaskMix

    plain = _run(model_dir, tmp_path / "plain", algo="grpo", steps=2, seed=1)
    out = _run(model_dir, tmp_path / "run", algo="grpo", steps=2, strategy_k=3, seed=1)
    assert out["log"] == plain["log"]
    wa, wb = _weights(tmp_path / "plain"), _weights(tmp_path / "run")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert "strategy_change" not in plain["eval"]
    task = TaskMix(TASKS, heldout_share=BASE["heldout_share"])
    problems = [task.problem(i) for i in ev["heldout_ids"]]
    tok = AutoTokenizer.from_pretrained(model_dir)
    for name, path in (("warm_start_strategies", model_dir), ("final_strategies", tmp_path / "run" / "model")):
        want = heldout_strategies(AutoModelForCausalLM.from_pretrained(path), tok, task, problems, 3, 1.0,
                                  BASE["max_new_tokens"], seed=6)
        assert ev[name] == want and ev[name]["problem_ids"] == ev["heldout_ids"]
    assert ev["strategy_change"] == heldout_strategy_change(ev["warm_start_strategies"], ev["final_strategies"],
                                                            seed=1)
    spread = benchmark_script("bootstrap_spread")
    rc = spread.main([str(tmp_path / "run"), "--seeds", "2", "--json", str(tmp_path / "spread.json")])
    if ev["strategy_change"]["Hfam_complete_interval"] is None:  # fewer than 2 complete problems: nothing to redo
        assert rc == 2
    else:
        assert rc == 0 and json.loads((tmp_path / "spread.json").read_text())[str(tmp_path / "run")]["reproduced"]
    with pytest.raises(ValueError, match="strategy_k"):
        RLConfig(strategy_k=-1).validate()
    # resuming a run started without it cannot measure its warm start any more: refused (another setting), nothing
    # rewritten
    from hicra.errors import InputError

    before = (tmp_path / "plain" / "eval.json").read_text()
    with pytest.raises(InputError, match="field 'config.strategy_k': cannot resume with another setting"):
        run_rl(RLConfig(**{**BASE, "algo": "grpo", "steps": 2, "strategy_k": 3, "seed": 1}), model_dir,
               tmp_path / "plain",
               resume=True, progress=False, log=lambda *a: None)
    assert (tmp_path / "plain" / "eval.json").read_text() == before


def test_same_seed_same_run_other_seed_differs(model_dir, tmp_path):
    a = _run(model_dir, tmp_path / "a", algo="grpo")
    b = _run(model_dir, tmp_path / "b", algo="grpo")
    c = _run(model_dir, tmp_path / "c", algo="grpo", seed=1)
    assert a["log"] == b["log"] and c["log"] != a["log"]
    wa, wb, wc = (_weights(tmp_path / x) for x in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    # learning happened: the weights moved away from the warm start
    from safetensors.torch import load_file

    w0 = load_file(str(Path(model_dir) / "model.safetensors"))
    assert any(not torch.equal(wa[k], w0[k]) for k in wa)


def test_resume_after_sigkill_matches_uninterrupted_run(model_dir, tmp_path):
    full = _run(model_dir, tmp_path / "full", algo="hicra", steps=6)
    run_dir = tmp_path / "killed"
    cfg = json.dumps({**BASE, "algo": "hicra", "steps": 6})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hicra.lab.rl", str(model_dir), str(run_dir), "--config", cfg],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "model").exists()
    resumed = run_rl(RLConfig(**{**BASE, "algo": "hicra", "steps": 6}), model_dir, run_dir, resume=True,
                     progress=False, log=lambda *a: None)
    assert resumed["log"] == full["log"]
    wf, wr = _weights(tmp_path / "full"), _weights(run_dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert _rollouts(run_dir) == _rollouts(tmp_path / "full")
    assert resumed["eval"]["final"] == full["eval"]["final"]


def test_resume_from_an_intermediate_checkpoint_in_process(model_dir, tmp_path):
    full = _run(model_dir, tmp_path / "full", algo="placebo", steps=4)
    part = _run(model_dir, tmp_path / "part", algo="placebo", steps=2)
    assert part["log"] == full["log"][:2]
    resumed = run_rl(RLConfig(**{**BASE, "algo": "placebo", "steps": 4}), model_dir, tmp_path / "part",
                     resume=True, progress=False, log=lambda *a: None)
    assert resumed["log"] == full["log"]
    wf, wr = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all(torch.equal(wf[k], wr[k]) for k in wf)


def _files_of(run_dir):
    """What a run directory holds that a resume must get right: logs, curves and the snapshot folders."""
    return {"train_log": (run_dir / "train_log.jsonl").read_text(),
            "eval_curve": (run_dir / "eval_curve.jsonl").read_text(), "probes": (run_dir / "probes.jsonl").read_text(),
            "snapshots": sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))}


def test_a_run_made_longer_or_stopped_at_its_checkpoint_is_an_uninterrupted_one(model_dir, tmp_path):
    """(a) A 3-step run resumed to 4 steps (eval every 2, checkpoints every 2): before, its final evaluation point,
    probe row and snapshot at step 3, off both grids, stayed in the curve an uninterrupted 4-step run does not have.
    (b) Resumed with `steps` at the last checkpoint after later steps had been logged: before, train_log.jsonl kept
    the undone steps' rows. Both now leave the files of an uninterrupted run (a reviewer's repros)."""
    import shutil

    kw = dict(algo="grpo", checkpoint_every=2)
    _run(model_dir, tmp_path / "full4", steps=4, **kw)
    _run(model_dir, tmp_path / "ext", steps=3, **kw)
    assert "step_000003" in _files_of(tmp_path / "ext")["snapshots"]
    # what a save killed part-way leaves (atomic_dir's temp folders) goes on resume
    for litter in (tmp_path / "ext" / "checkpoints" / ".step_000004.x1.tmp", tmp_path / "ext" / ".model.x2.tmp"):
        litter.mkdir()
        (litter / "model.safetensors").write_bytes(b"half")
    run_rl(RLConfig(**{**BASE, **kw, "steps": 4}), model_dir, tmp_path / "ext", resume=True, progress=False,
           log=lambda *a: None)
    assert _files_of(tmp_path / "ext") == _files_of(tmp_path / "full4")
    hidden = [p for p in (tmp_path / "ext").rglob(".*")]
    assert hidden == []
    # (b): a 4-step run whose last.pt is put back to the step-2 checkpoint after steps 3-4 were logged
    _run(model_dir, tmp_path / "full2", steps=2, **kw)
    shutil.copytree(tmp_path / "full4", tmp_path / "cut")
    shutil.copy(tmp_path / "full2" / "checkpoints" / "last.pt", tmp_path / "cut" / "checkpoints" / "last.pt")
    run_rl(RLConfig(**{**BASE, **kw, "steps": 2}), model_dir, tmp_path / "cut", resume=True, progress=False,
           log=lambda *a: None)
    assert _files_of(tmp_path / "cut") == _files_of(tmp_path / "full2")


def test_resume_refuses_other_settings_and_records_longer_runs(model_dir, tmp_path):
    """A resumed run is the run it continues: another algorithm, seed or warm start is refused (naming run.json and
    the field) before anything is written; more steps are allowed and run.json then records them."""
    import shutil

    from hicra.errors import InputError
    from hicra.lab.rl import resume_conflict

    run_dir = tmp_path / "r"
    _run(model_dir, run_dir, algo="grpo", steps=1)
    before = (run_dir / "run.json").read_text()
    for change, field in (({"algo": "hicra"}, "config.algo"), ({"seed": 1}, "config.seed"),
                          ({"lr": 1e-3}, "config.lr")):
        with pytest.raises(InputError, match=rf"run.json, field '{field}': cannot resume with another setting"):
            run_rl(RLConfig(**{**BASE, "algo": "grpo", "steps": 2, **change}), model_dir, run_dir, resume=True,
                   progress=False, log=lambda *a: None)
    other = tmp_path / "warmstart-other"
    shutil.copytree(model_dir, other)
    with pytest.raises(InputError, match="field 'model': cannot resume from another warm start"):
        run_rl(RLConfig(**{**BASE, "algo": "grpo", "steps": 2}), other, run_dir, resume=True, progress=False,
               log=lambda *a: None)
    assert (run_dir / "run.json").read_text() == before
    with pytest.raises(InputError, match=r"field 'config.steps': cannot resume to 0 steps: 1 are done \(the last "
                                         r"checkpoint\)"):
        run_rl(RLConfig(**{**BASE, "algo": "grpo", "steps": 0}), model_dir, run_dir, resume=True, progress=False,
               log=lambda *a: None)
    assert (run_dir / "run.json").read_text() == before
    out = run_rl(RLConfig(**{**BASE, "algo": "grpo", "steps": 2}), model_dir, run_dir, resume=True, progress=False,
                 log=lambda *a: None)
    info = json.loads((run_dir / "run.json").read_text())
    assert len(out["log"]) == 2 and info["config"]["steps"] == 2 and info["algorithm"] == "grpo"
    assert info["run_id"] == json.loads(before)["run_id"] and info["created"] == json.loads(before)["created"]
    # fields a record lacks count as their defaults; tuples and lists compare alike
    recorded = {k: v for k, v in info["config"].items() if k != "strategy_k"}
    assert resume_conflict(RLConfig(**{**BASE, "algo": "grpo", "steps": 9}), recorded) is None
    assert resume_conflict(RLConfig(**{**BASE, "algo": "grpo", "strategy_k": 2}), recorded) == (
        "strategy_k", "the run's 0, given 2")


def test_token_advantages_per_algorithm():
    from hicra.algorithms import grpo_advantages

    gen = torch.Generator().manual_seed(0)
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), [0, 0, 1, 1], scale="none")
    resp = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    plan = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    ent = torch.arange(16, dtype=torch.float32).reshape(4, 4)
    cfg = RLConfig(alpha=0.2, entropy_quantile=0.25)
    cfg.algo = "grpo"
    out, m = token_advantages(cfg, adv, resp, plan, ent, gen)
    assert m is None and torch.equal(out, adv[:, None].expand(4, 4))
    cfg.algo = "hicra"
    out, m = token_advantages(cfg, adv, resp, plan, ent, gen)
    want = torch.where(plan & resp, adv[:, None] + 0.2 * adv[:, None].abs(), adv[:, None]) * resp
    torch.testing.assert_close(out, want)
    assert out[0, 3] == 0  # padding (planning flag outside the response) is neither amplified nor kept
    cfg.algo = "high-entropy"
    out, m = token_advantages(cfg, adv, resp, plan, ent, gen)
    assert int(m.sum()) == round(0.25 * int(resp.sum())) and bool(m[3, 1:].all())  # top entropies: last row
    cfg.algo = "placebo"
    out, m = token_advantages(cfg, adv, resp, plan, ent, gen)
    assert int(m.sum()) == int((plan & resp).sum()) and not bool((m & ~resp).any())
    cfg.algo = "placebo-mass"
    with pytest.raises(ValueError, match="logprobs"):
        token_advantages(cfg, adv, resp, plan, ent, gen)
    out, m = token_advantages(cfg, adv, resp, plan, ent, gen, logprobs=torch.full((4, 4), -1.0))
    assert not bool((m & (plan | ~resp)).any()) and bool(m.any())


def test_placebo_mass_run_changes_the_update_as_much_as_hicra_would(model_dir, tmp_path):
    """A placebo-mass run, step by step: the mask recomputed from the step's rollout rows (behaviour log-probs,
    planning masks, rewards -> r - mean advantages) and the run's mask generator (seed + 2, one draw per step)
    gives exactly the logged amplified share and update change (so the run fed the right log-probs to the mask);
    that change is within one token's weight of what amplifying the planning tokens would make, with another token
    count."""
    from hicra.algorithms import gradient_mass, grpo_advantages, mass_matched_placebo_mask
    from hicra.dynamics.records import read_rollouts

    _run(model_dir, tmp_path / "pm", algo="placebo-mass", steps=3, seed=2)
    log = [json.loads(x) for x in (tmp_path / "pm" / "train_log.jsonl").read_text().splitlines()]
    table = read_rollouts(tmp_path / "pm", columns=["step", "logprobs", "planning_mask", "reward"]).to_pylist()
    gen = torch.Generator().manual_seed(2 + 2)
    assert len(log) == 3 and any(e["planning_update_share"] for e in log)
    for entry in log:
        rows = [r for r in table if r["step"] == entry["step"]]
        width = max(len(r["logprobs"]) for r in rows)
        resp = torch.tensor([[t < len(r["logprobs"]) for t in range(width)] for r in rows])
        pad = [0.0] * width
        lp = torch.tensor([(r["logprobs"] + pad)[:width] for r in rows], dtype=torch.float32)
        plan = torch.tensor([(list(map(bool, r["planning_mask"])) + [False] * width)[:width] for r in rows])
        adv = grpo_advantages(torch.tensor([r["reward"] for r in rows]), torch.arange(len(rows)) // BASE["group_size"],
                              scale="none")
        mask = mass_matched_placebo_mask(resp, plan, lp, adv, gen)
        assert entry["amplified_ratio"] == pytest.approx(float(mask.sum()) / float(resp.sum()), abs=1e-12)
        change = gradient_mass(lp, resp, mask, adv, 0.2)["update_change"]
        if entry["update_change"] is None:  # no update at all (every group's rewards equal): NaN, logged as null
            assert change != change and not mask.any()
            continue
        assert entry["update_change"] == pytest.approx(change, rel=1e-6, abs=1e-12)
        weight = adv[:, None].abs() * (1 - lp.exp()) * resp
        one_token = 0.2 * float(weight.max()) / max(float(weight.sum()), 1e-12)
        target = 0.2 * (entry["planning_update_share"] or 0.0)
        if target <= 0.2 * 0.5:  # planning holds at most half of the update: the placebo can match it
            assert abs(change - target) <= one_token + 1e-9
        if entry["planning_update_share"]:
            assert entry["amplified_ratio"] != entry["planning_ratio"]


def test_micro_batches_give_the_same_update_as_one_pass(model_dir, tmp_path):
    """Length-sorted, trimmed micro-batches with weighted losses reproduce the one-pass gradient step."""
    # 6 prompts: with 3 every group of the first step had equal rewards, so the gradient was 0 and the test vacuous
    one = _run(model_dir, tmp_path / "one", algo="hicra", steps=1, prompts_per_step=6, micro_batch_size=0)
    micro = _run(model_dir, tmp_path / "micro", algo="hicra", steps=1, prompts_per_step=6, micro_batch_size=2)
    assert one["log"][0]["grad_norm"] > 0
    # one step from the same warm start: identical batches, so losses, gradients and updated weights must agree
    assert abs(one["log"][0]["loss/pg_loss"] - micro["log"][0]["loss/pg_loss"]) < 1e-6
    assert one["log"][0]["reward"] == micro["log"][0]["reward"]
    # the accumulated gradient itself (its clipped-before norm, averaged over the minibatches)
    assert micro["log"][0]["grad_norm"] == pytest.approx(one["log"][0]["grad_norm"], rel=1e-5)
    # Adam's first steps move each weight by about lr * sign(g): an element whose gradient is ~0 can take either
    # sign from float rounding alone (seen: 1 of 49,152 elements). Every other element must agree.
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "micro")
    lr = BASE["lr"]
    for k in w1:
        off = (w1[k] - w2[k]).abs() > 1e-4
        assert int(off.sum()) <= max(2, off.numel() // 10_000), k
        assert float((w1[k] - w2[k]).abs().max()) <= 2 * lr * BASE["minibatches"] + 1e-6, k


def test_joined_layout_gives_the_split_layouts_update(model_dir, tmp_path):
    """RLConfig.logprob_layout="joined" (prompt and response contiguous, no attention mask) computes the same
    log-probs as the split layout, so one step from the same warm start gives the same loss, gradient norm and,
    up to float rounding, the same weights; the KL reference pass (kl_coef > 0) goes through it too."""
    split = _run(model_dir, tmp_path / "split", algo="hicra", steps=1, prompts_per_step=6, kl_coef=0.05)
    joined = _run(model_dir, tmp_path / "joined", algo="hicra", steps=1, prompts_per_step=6, kl_coef=0.05,
                  logprob_layout="joined")
    a, b = split["log"][0], joined["log"][0]
    assert a["grad_norm"] > 0 and a["reward"] == b["reward"]
    assert b["loss/pg_loss"] == pytest.approx(a["loss/pg_loss"], abs=1e-6)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert a["loss/kl_loss"] > 0 and b["loss/kl_loss"] == pytest.approx(a["loss/kl_loss"], rel=1e-4, abs=1e-8)
    w1, w2 = _weights(tmp_path / "split"), _weights(tmp_path / "joined")
    for k in w1:  # Adam's first steps: an element whose gradient is ~0 may take either sign (see above)
        off = (w1[k] - w2[k]).abs() > 1e-4
        assert int(off.sum()) <= max(2, off.numel() // 10_000), k
    with pytest.raises(ValueError, match="logprob_layout must be one of"):
        RLConfig(logprob_layout="packed").validate()


def test_skipping_zero_advantage_rows_keeps_the_update(model_dir, tmp_path):
    """Rows whose advantages are all 0 have a zero loss gradient: leaving them out of the pass (the default) gives
    the gradient and the weights of the full pass."""
    from hicra.lab.rl import gradient_rows

    full = _run(model_dir, tmp_path / "full", algo="hicra", steps=1, prompts_per_step=6, skip_zero_advantage=False)
    skip = _run(model_dir, tmp_path / "skip", algo="hicra", steps=1, prompts_per_step=6)
    rows = _rollouts(tmp_path / "skip")[0][1]
    groups = [{r["reward"] for r in rows[i: i + BASE["group_size"]]} for i in range(0, len(rows), BASE["group_size"])]
    assert any(len(g) == 1 for g in groups) and any(len(g) > 1 for g in groups)  # some rows skipped, some run
    assert skip["log"][0]["reward"] == full["log"][0]["reward"]
    assert skip["log"][0]["grad_norm"] == pytest.approx(full["log"][0]["grad_norm"], rel=1e-5)
    w1, w2 = _weights(tmp_path / "full"), _weights(tmp_path / "skip")
    for k in w1:  # as above: Adam's near-zero elements may flip sign from rounding alone
        off = (w1[k] - w2[k]).abs() > 1e-4
        assert int(off.sum()) <= max(2, off.numel() // 10_000), k
    # one group per minibatch: the equal-reward groups' minibatches have no gradient row at all, and Adam must get
    # zeros for them (its moments still decay and move the weights) as the full pass gives it
    full = _run(model_dir, tmp_path / "full6", algo="grpo", steps=1, prompts_per_step=6, minibatches=6,
                skip_zero_advantage=False)
    skip = _run(model_dir, tmp_path / "skip6", algo="grpo", steps=1, prompts_per_step=6, minibatches=6)
    assert skip["log"][0]["grad_norm"] == pytest.approx(full["log"][0]["grad_norm"], rel=1e-5)
    w1, w2 = _weights(tmp_path / "full6"), _weights(tmp_path / "skip6")
    for k in w1:
        off = (w1[k] - w2[k]).abs() > 1e-4
        assert int(off.sum()) <= max(2, off.numel() // 10_000), k
    # the rule itself: all-zero rows go unless a KL term pulls every token
    adv = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, -0.1]])
    assert gradient_rows(torch.arange(3), adv, 0.0).tolist() == [1, 2]
    assert gradient_rows(torch.arange(3), adv, 0.05).tolist() == [0, 1, 2]


def _reference_greedy(model, tokenizer, prompts, max_new_tokens, calculator):
    """The probes' definition, one full forward per token: greedy, with the true result and a newline forced after
    every open `X op Y=` when `calculator` is set."""
    import re

    from hicra.lab.tasks.base import apply_op

    open_line = re.compile(r"(\d+)([-+*/])(\d+)=$")
    outs = []
    for prompt in prompts:
        out, forced = [], []
        while len(out) < max_new_tokens:
            with torch.no_grad():
                best = int(model(input_ids=torch.tensor([prompt + out])).logits[0, -1].argmax())
            tok = forced.pop(0) if forced else best
            out.append(tok)
            if tok == tokenizer.eos_token_id:
                break
            m = open_line.search(tokenizer.decode(out, skip_special_tokens=True).rsplit("\n", 1)[-1])
            if calculator and not forced and m:
                value = apply_op(int(m.group(1)), m.group(2), int(m.group(3)))
                if value is not None and value.denominator == 1:
                    forced = tokenizer(str(int(value)))["input_ids"] + tokenizer("\n")["input_ids"]
        outs.append(out)
    return outs


def test_probes_equal_their_token_by_token_definition(model_dir, monkeypatch):
    """The batched probes (one teacher-forced pass; the calculator in one KV-cache pass of the plain-torch decoder,
    or in rounds for other models) give what decoding every line / response greedily one token at a time gives."""
    import random

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.model import format_prompt
    from hicra.lab.probes import calculator_decode, execution_probe
    from hicra.lab.tasks import TaskMix
    from hicra.lab.tasks.base import computation_lines

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    task = TaskMix(TASKS, heldout_share=0.3)
    problems = task.heldout(8) + [task.sample(random.Random(1), "train") for _ in range(8)]
    prompts = [tok(format_prompt(p.question))["input_ids"] for p in problems]
    reference = _reference_greedy(model, tok, prompts, 40, True)
    assert calculator_decode(model, tok, prompts, 40) == reference
    assert reference != _reference_greedy(model, tok, prompts, 40, False)  # the calculator changed some response
    # short budgets cut rows inside a forced result; both paths must cut them where the definition does
    for budget in (7, 13):
        short = _reference_greedy(model, tok, prompts, budget, True)
        assert calculator_decode(model, tok, prompts, budget) == short
    with monkeypatch.context() as m:  # the rounds, as for a model the plain-torch decoder does not support
        m.setattr("hicra.lab.fastdecode.unsupported_reason", lambda model: "test")
        assert calculator_decode(model, tok, prompts, 40) == reference
        assert calculator_decode(model, tok, prompts, 13) == _reference_greedy(model, tok, prompts, 13, True)
    # the execution probe: each line's prefix decoded greedily until the line ends
    rng, right, total = random.Random(0), 0, 0
    for p, prompt in zip(problems, prompts, strict=True):
        trace, pos = task.family_of(p).oracle_trace(p, rng), 0
        for x, op, y, z in computation_lines(trace):
            cut = trace.index(f"{x}{op}{y}=", pos) + len(f"{x}{op}{y}=")
            out = _reference_greedy(model, tok, [prompt + tok(trace[:cut])["input_ids"]], 6, False)[0]
            text = tok.decode(out, skip_special_tokens=True)
            digits = text[: len(text) - len(text.lstrip("0123456789"))] if text[:1].isdigit() else ""
            right += digits == str(z) and not text[len(digits):][:1].isdigit()
            total, pos = total + 1, cut
    assert 0 < right < total  # a model that gets some lines right and some wrong: the comparison means something
    assert execution_probe(model, tok, task, problems) == pytest.approx(right / total)


def test_execution_probe_probability_equals_its_line_by_line_definition(model_dir):
    """`execution_probe_probability`: each line's prefix run alone (no batch, no padding), the result's digits fed one
    at a time, P = prod softmax(logits / T)[digit] * P(next token is not a digit); as T -> 0 it is the greedy probe."""
    import random

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.model import format_prompt
    from hicra.lab.probes import _digit_ids, execution_probe, execution_probe_probability, run_probes
    from hicra.lab.tasks import TaskMix
    from hicra.lab.tasks.base import computation_lines

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    task = TaskMix(TASKS, heldout_share=0.3)
    problems = task.heldout(6)
    digits = _digit_ids(tok)
    rng, probs = random.Random(0), []
    for p in problems:
        prompt = tok(format_prompt(p.question))["input_ids"]
        trace, pos = task.family_of(p).oracle_trace(p, rng), 0
        for x, op, y, z in computation_lines(trace):
            cut = trace.index(f"{x}{op}{y}=", pos) + len(f"{x}{op}{y}=")
            ids, prob = prompt + tok(trace[:cut])["input_ids"], 1.0
            for d in tok(str(z), add_special_tokens=False)["input_ids"]:
                with torch.no_grad():
                    last = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                prob *= float(torch.softmax(last / 0.7, -1)[d])
                ids = ids + [d]
            with torch.no_grad():
                last = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            probs.append(prob * (1 - float(torch.softmax(last / 0.7, -1)[digits].sum())))
            pos = cut
    assert len(probs) > 5 and 0.01 < sum(probs) / len(probs) < 0.99  # neither all sure nor all hopeless
    assert execution_probe_probability(model, tok, task, problems, 0.7) == pytest.approx(sum(probs) / len(probs),
                                                                                          rel=1e-4)
    greedy = execution_probe(model, tok, task, problems)
    assert execution_probe_probability(model, tok, task, problems, 1e-4) == pytest.approx(greedy, abs=1e-6)
    row = run_probes(model, tok, task, problems, 20, 3, temperature=0.7)
    assert row["exec_probe_line_prob"] == pytest.approx(sum(probs) / len(probs), rel=1e-4)
    assert "exec_probe_line_prob" not in run_probes(model, tok, task, problems, 20, 3)


def test_a_second_writer_of_a_run_directory_is_refused(model_dir, tmp_path):
    """Two runs started into one directory both ended with exit 0, one lost or the two mixed (a reviewer's repro
    with two processes); the directory is now locked while a run writes it."""
    from hicra.errors import InputError
    from hicra.fileio import dir_lock

    run_dir = tmp_path / "run"
    with dir_lock(run_dir):  # another writer holds it
        with pytest.raises(InputError, match="another process is writing this run directory now"):
            run_rl(RLConfig(**{**BASE, "algo": "grpo", "steps": 1}), model_dir, run_dir, progress=False,
                   log=lambda *a: None)
        assert list(run_dir.iterdir()) == []


def test_tensorboard_keeps_one_event_per_step_after_a_resume_redoes_steps(model_dir, tmp_path):
    """A resume from an earlier checkpoint redoes steps; their TensorBoard events replace the ones written before
    (`purge_step`), as the training log does (before: two events for each redone step; a reviewer's repro)."""
    import shutil

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    kw = dict(algo="grpo", checkpoint_every=2, tensorboard=True)
    _run(model_dir, tmp_path / "full4", steps=4, **kw)
    _run(model_dir, tmp_path / "full2", steps=2, **kw)
    shutil.copy(tmp_path / "full2" / "checkpoints" / "last.pt", tmp_path / "full4" / "checkpoints" / "last.pt")
    run_rl(RLConfig(**{**BASE, **kw, "steps": 4}), model_dir, tmp_path / "full4", resume=True, progress=False,
           log=lambda *a: None)
    acc = EventAccumulator(str(tmp_path / "full4" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("lab/reward")] == [0, 1, 2, 3]
