"""Online consolidation detector (hicra.dynamics.online): planted changes, null sequences, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hicra.dynamics.online import (
    OnlineConfig,
    OnlineConsolidationDetector,
    class_perplexities,
    detection_rates,
    execution_perplexity,
)

STEPS, CHANGE = 40, 15


def _classes(i: int, execution, planning, sd: float):
    """(steps, execution, planning, reference) with white noise; the reference mixes 90% execution tokens."""
    rng = np.random.default_rng(i)
    s = np.arange(STEPS)
    ref = 0.9 * execution + 0.1 * planning
    return (s, execution + rng.normal(0, sd, STEPS), planning + rng.normal(0, 2 * sd, STEPS),
            ref + rng.normal(0, 2 * sd, STEPS))


def planted(i: int, sd: float = 0.01):
    """Execution falls linearly until step CHANGE, flat after; planning keeps falling slowly (consolidates later)."""
    s = np.arange(STEPS)
    return _classes(i, 1.0 - 0.02 * np.minimum(s, CHANGE), 1.0 - 0.005 * s, sd)


def together(i: int, sd: float = 0.01):
    """Both classes fall until CHANGE and flatten together: no order, the detector must not switch."""
    s = np.arange(STEPS)
    fall = 1.0 - 0.02 * np.minimum(s, CHANGE)
    return _classes(1000 + i, fall, fall, sd)


def flat(i: int, sd: float = 0.01):
    return _classes(2000 + i, np.ones(STEPS), np.ones(STEPS), sd)


def straight(i: int, sd: float = 0.01):
    """A steady fall that never flattens: no end of consolidation to find."""
    s = np.arange(STEPS)
    return _classes(3000 + i, 1.0 - 0.01 * s, 1.0 - 0.01 * s, sd)


def test_noise_free_hinge_fires_at_the_breakpoint():
    det = OnlineConsolidationDetector()
    s_all = np.arange(STEPS)
    e, p = 2.0 - 0.05 * np.minimum(s_all, CHANGE), 3.0 - 0.02 * s_all
    decisions = [det.update(s, e[s], p[s], 0.9 * e[s] + 0.1 * p[s]) for s in range(STEPS)]
    assert det.fired and det.consolidation_end_step == CHANGE
    cfg = det.config
    # it cannot fire before the flat part has been seen for min_after steps and confirmed `confirm` times
    assert det.fired_step >= CHANGE + cfg.min_after + cfg.confirm - 1
    assert det.fired_step <= CHANGE + cfg.min_after + cfg.confirm + 2
    assert [d["fired"] for d in decisions].index(True) == det.fired_step
    assert decisions[det.fired_step]["order"] == "execution-first"
    # no test before min_steps values
    assert not any(d["tested"] for d in decisions[: cfg.min_steps - 1])


def test_planted_changes_are_found_within_the_lag():
    rates = detection_rates(planted, 8, change_step=CHANGE, max_lag=12)
    assert rates["fire_rate"] >= 7 / 8
    assert rates["within_lag_rate"] >= 0.8
    assert sum(lag < 0 for lag in rates["lags"]) <= 1  # firing before the change is rare


def planning_first(i: int, sd: float = 0.01):
    """The reverse of `planted`: planning falls until CHANGE and flattens, execution keeps falling slowly."""
    s = np.arange(STEPS)
    return _classes(4000 + i, 1.0 - 0.005 * s, 1.0 - 0.02 * np.minimum(s, CHANGE), sd)


@pytest.mark.parametrize("make", [together, flat, straight, planning_first])
def test_no_order_sequences_rarely_fire(make):
    """The differential rule: classes that settle together (the sharpening any on-policy RL gives), flat or
    steadily falling classes, and planning settling first, do not switch the detector."""
    rates = detection_rates(make, 8)
    assert rates["fire_rate"] <= 1 / 8


def test_confirmation_rule_cuts_false_alarms():
    single = detection_rates(together, 6, OnlineConfig(confirm=1))
    confirmed = detection_rates(together, 6, OnlineConfig(confirm=3))
    assert confirmed["fire_rate"] <= single["fire_rate"]
    # every confirmed alarm on a sequence is also a single-look alarm on it, no earlier
    for a, b in zip(single["fired_steps"], confirmed["fired_steps"], strict=True):
        if b is not None:
            assert a is not None and a <= b


def test_state_dict_resume_is_exact():
    steps, *series = planted(7)
    rows = list(zip(*series, strict=True))
    full = OnlineConsolidationDetector()
    ref = [full.update(s, *v) for s, v in zip(steps, rows, strict=True)]
    first = OnlineConsolidationDetector()
    out = [first.update(s, *v) for s, v in zip(steps[:22], rows[:22], strict=True)]
    state = first.state_dict()
    second = OnlineConsolidationDetector()
    second.load_state_dict(state)
    out += [second.update(s, *v) for s, v in zip(steps[22:], rows[22:], strict=True)]
    assert out == ref
    assert second.state_dict() == full.state_dict()
    with pytest.raises(ValueError, match="different OnlineConfig"):
        OnlineConsolidationDetector(OnlineConfig(confirm=2)).load_state_dict(state)
    old = {k: v for k, v in state.items() if k not in ("planning", "reference")}
    with pytest.raises(ValueError, match="execution only"):
        OnlineConsolidationDetector().load_state_dict(old)


def test_decision_comes_only_from_measured_values():
    det = OnlineConsolidationDetector()
    for s in range(200):  # steps pass, nothing measured: never fires, never tests
        d = det.update(s, float("nan"), 1.0, 1.0)
        assert not d["tested"]
    assert not det.fired and det.steps == []
    with pytest.raises(ValueError, match="steps must increase"):
        det.update(5, 1.0, 1.0, 1.0)
        det.update(5, 1.0, 1.0, 1.0)


def test_bad_config():
    for bad in (OnlineConfig(min_steps=4), OnlineConfig(confirm=0), OnlineConfig(alpha=1.5)):
        with pytest.raises(ValueError):
            OnlineConsolidationDetector(bad)


def test_execution_perplexity_matches_the_analyzer(tmp_path):
    """The in-loop value equals `hicra.dynamics.metrics.step_metrics`'s ppl_execution on the same rollouts."""
    from hicra.dynamics.metrics import step_metrics
    from hicra.dynamics.records import iter_steps
    from hicra.dynamics.synthetic import make_synthetic_run

    run = make_synthetic_run(tmp_path / "run", steps=3, prompts=3, group=2)
    for step, table in iter_steps(run):
        rows = table.to_pylist()
        width = max(len(r["token_ids"]) for r in rows)
        lp = np.zeros((len(rows), width), np.float32)
        resp = np.zeros((len(rows), width), bool)
        plan = np.zeros((len(rows), width), bool)
        for i, r in enumerate(rows):
            n = len(r["token_ids"])
            lp[i, :n], resp[i, :n], plan[i, :n] = r["logprobs"], True, r["planning_mask"]
        expected = step_metrics(table)
        assert execution_perplexity(lp, resp, plan) == pytest.approx(expected["ppl_execution"], rel=1e-6)
        got = class_perplexities(lp, resp, plan, step)
        want = [expected[f"ppl_{c}"] for c in ("execution", "planning", "reference")]
        assert got == pytest.approx(want, rel=1e-6)
    assert np.isnan(execution_perplexity(lp, resp, resp))  # every token planning: no execution tokens


# ---------------------------------------------------------------- the phase-aware arm in the lab RL loop

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from hicra.lab.sft import WarmStartConfig, warm_start

    cfg = WarmStartConfig(n_train=200, epochs=1, vocab_size=300, size="1m", max_response_tokens=96)
    return warm_start(cfg, tmp_path_factory.mktemp("ws"), progress=False, log=lambda *a: None)


# a liberal detector so that a tiny run switches within its few steps (the switch itself is what is tested)
LIBERAL = {"min_steps": 6, "confirm": 1, "min_after": 1, "alpha": 0.5, "n_boot": 49}


def _tiny_cfg(**kw):
    from hicra.lab.rl import RLConfig

    # seed 0: the liberal detector fires at step 6 here (it fires within 12 steps for 6 of seeds 0-7); the tests
    # check how the switch follows the rollouts, so they need a run where it happens, with steps on both sides
    base = dict(algo="phase-aware", alpha=0.3, steps=12, prompts_per_step=2, group_size=2, max_new_tokens=24,
                n_eval=4, checkpoint_every=4, minibatches=1, phase_detector=LIBERAL, seed=0)
    return RLConfig(**{**base, **kw})


def _log(run_dir):
    import json

    return [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_token_advantages_phase_aware_alpha():
    from hicra.algorithms import hicra_advantages
    from hicra.lab.rl import token_advantages

    cfg = _tiny_cfg()
    adv = torch.tensor([1.0, -0.5, 0.0])
    resp = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    plan = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    off, mask_off = token_advantages(cfg, adv, resp, plan, None, None, alpha=0.0)
    assert mask_off is None and torch.equal(off, adv[:, None].expand(3, 4))  # = GRPO before the switch
    on, mask_on = token_advantages(cfg, adv, resp, plan, None, None)
    assert torch.equal(mask_on, plan & resp)
    assert torch.allclose(on, hicra_advantages(adv, plan & resp, 0.3) * resp)


@pytest.mark.xdist_group("phase_aware_rl")  # share the tiny warm start
def test_phase_aware_switch_follows_the_measured_rollouts(tiny_model, tmp_path):
    """Replay the run's own rollouts offline (analyzer's ppl_execution) through a fresh detector: it must fire at
    the logged step, and alpha must be 0 before it and the configured alpha from it on."""
    from hicra.dynamics.metrics import compute_metrics
    from hicra.lab.rl import run_rl

    cfg = _tiny_cfg()
    run_rl(cfg, tiny_model, tmp_path / "run", progress=False, log=lambda *a: None)
    log = _log(tmp_path / "run")
    df = compute_metrics(tmp_path / "run")
    det = OnlineConsolidationDetector(OnlineConfig(**LIBERAL))
    for row in df.itertuples():
        det.update(int(row.step), row.ppl_execution, row.ppl_planning, row.ppl_reference)
    fired = [e["phase_fired_step"] for e in log if e["phase_fired_step"] is not None]
    assert det.fired_step == (fired[0] if fired else None)
    # the differential rule may not switch within 12 tiny steps; whatever it decided, alpha follows it
    switch = det.fired_step if det.fired else 10**9
    for e in log:
        assert e["phase_alpha"] == (0.3 if e["step"] >= switch else 0.0)
        assert (e["amplified_ratio"] > 0) == (e["step"] >= switch and e["planning_ratio"] > 0)


@pytest.mark.xdist_group("phase_aware_rl")  # share the tiny warm start
def test_phase_aware_resume_is_exact(tiny_model, tmp_path, monkeypatch):
    import hicra.lab.rl as rl

    cfg = _tiny_cfg()
    rl.run_rl(cfg, tiny_model, tmp_path / "full", progress=False, log=lambda *a: None)
    real = rl.save_checkpoint
    saved = []

    def die_after_second(*args, **kwargs):
        real(*args, **kwargs)
        saved.append(args[3])
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(rl, "save_checkpoint", die_after_second)
    with pytest.raises(KeyboardInterrupt):
        rl.run_rl(cfg, tiny_model, tmp_path / "cut", progress=False, log=lambda *a: None)
    monkeypatch.setattr(rl, "save_checkpoint", real)
    assert saved == [3, 7]
    rl.run_rl(cfg, tiny_model, tmp_path / "cut", resume=True, progress=False, log=lambda *a: None)
    a, b = _log(tmp_path / "cut"), _log(tmp_path / "full")
    assert a == b

    sa = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)["detector"]
    sb = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=False)["detector"]
    assert sa == sb
    # it holds one value per class for each step where all three were measured (a step without planning
    # tokens has no planning perplexity and is skipped), none after it fired (latched)
    last = sa["fired_step"] if sa["fired_step"] is not None else cfg.steps - 1
    assert sa["steps"] == sorted(set(sa["steps"])) and all(0 <= s <= last for s in sa["steps"])
    assert len(sa["values"]) == len(sa["planning"]) == len(sa["reference"]) == len(sa["steps"])


def test_detector_state_records_the_reference_draw():
    """A saved state names how its reference values were drawn (`REFERENCE_DRAW`); a state from before rules v3
    (no name: drawn from all tokens) cannot be resumed, since one curve would join two draws."""
    from hicra.dynamics.metrics import REFERENCE_DRAW

    det = OnlineConsolidationDetector()
    for s in range(12):
        det.update(s, 1.0 - 0.01 * s, 1.0, 1.0)
    state = det.state_dict()
    assert state["reference_draw"] == REFERENCE_DRAW == "non-planning"
    again = OnlineConsolidationDetector()
    again.load_state_dict(state)
    assert again.reference == det.reference and again.steps == det.steps
    old = {k: v for k, v in state.items() if k != "reference_draw"}
    with pytest.raises(ValueError, match="drawn from 'all' tokens"):
        OnlineConsolidationDetector().load_state_dict(old)


def test_class_perplexities_take_bfloat16_logprobs():
    lp = torch.tensor([[-0.5, -2.0, -0.25, -1.5], [-1.0, -0.75, -0.5, -4.0]])  # exact in bfloat16
    resp = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    plan = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    assert execution_perplexity(lp.bfloat16(), resp, plan) == execution_perplexity(lp, resp, plan)
    assert class_perplexities(lp.bfloat16(), resp, plan, 3) == class_perplexities(lp, resp, plan, 3)
