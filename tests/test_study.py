"""`hicra study` on the tiny "smoke" preset: resumability, table values vs the run directories, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from hicra import study
from hicra.study import PRESETS, run_dir_for, run_study, summarize

pytestmark = pytest.mark.xdist_group("study")  # the smoke study fixture is built once


def _quiet(*_a):
    return None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A finished 2-arm x 2-seed smoke study, run through the process pool (2 workers)."""
    out = tmp_path_factory.mktemp("study") / "smoke"
    results = run_study(out, "smoke", workers=2, progress=False, log=_quiet)
    return out, results


def _snapshot(out: Path) -> dict:
    files = [p for p in (out / "runs").rglob("*") if p.is_file()]
    return {str(p): p.stat().st_mtime_ns for p in files}


def test_layout_and_counts(smoke):
    out, results = smoke
    assert results["arms"] == ["grpo", "hicra"] and results["seeds"] == 2
    steps = PRESETS["smoke"].rl["steps"]
    for arm in results["arms"]:
        for seed in range(2):
            rd = run_dir_for(out, arm, seed)
            done = json.loads((rd / "done.json").read_text())
            assert done["steps"] == steps
            assert done["code"] == study.code_version()  # the code that ran it, kept with the run
            assert len((rd / "train_log.jsonl").read_text().splitlines()) == steps
            assert json.loads((rd / "run.json").read_text())["seed"] == seed
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["per_arm"]["grpo"]["n_runs"] == 2
    for name in ("accuracy.png", "errors.png"):
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| hicra |" in (out / "results.md").read_text()


def test_finished_runs_are_not_recomputed(smoke):
    out, first = smoke
    before = _snapshot(out)
    again = run_study(out, "smoke", workers=2, progress=False, log=_quiet)
    assert _snapshot(out) == before  # no file of any run was rewritten
    assert again["per_arm"]["hicra"]["final_accuracy"] == first["per_arm"]["hicra"]["final_accuracy"]


def test_interrupted_run_resumes_exactly(smoke, tmp_path, monkeypatch):
    """Kill a run right after its first checkpoint; the rerun resumes it and ends where an uninterrupted run
    (the fixture's, same seed and warm start) ended."""
    import hicra.lab.rl as rl

    ref_out, _ = smoke
    real_save = rl.save_checkpoint
    calls = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    out = tmp_path / "s"
    monkeypatch.setattr(rl, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_study(out, "smoke", arms=["hicra"], seeds=1, workers=1, cache=ref_out / "warmstart", progress=False,
                  log=_quiet)
    monkeypatch.setattr(rl, "save_checkpoint", real_save)
    rd = run_dir_for(out, "hicra", 0)
    assert calls == [1] and study.run_state(rd) == "resume"
    run_study(out, "smoke", arms=["hicra"], seeds=1, workers=1, cache=ref_out / "warmstart", progress=False,
              log=_quiet)
    assert json.loads((rd / "done.json").read_text())["resumed"] is True
    got = [json.loads(x) for x in (rd / "train_log.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (run_dir_for(ref_out, "hicra", 0) / "train_log.jsonl").read_text().splitlines()]
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if b[k] is None:
                assert a[k] is None, k
            else:
                assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), k


def _plant(out: Path, arm: str, seed: int, final_acc: float, curve: list[float]) -> None:
    """Overwrite a finished run's held-out result and training-accuracy curve with known values."""
    rd = run_dir_for(out, arm, seed)
    ev = json.loads((rd / "eval.json").read_text())
    ev["final"]["accuracy"] = final_acc
    (rd / "eval.json").write_text(json.dumps(ev))
    log = [json.loads(x) for x in (rd / "train_log.jsonl").read_text().splitlines()]
    for e, v in zip(log, curve, strict=True):
        e["accuracy"] = v
    (rd / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))


def test_table_values_match_independent_computation(smoke, tmp_path):
    import shutil

    src, _ = smoke
    out = tmp_path / "copy"
    shutil.copytree(src / "runs", out / "runs")
    planted = {("grpo", 0): (0.25, [0.1, 0.2, 0.6]), ("grpo", 1): (0.50, [0.0, 0.3, 0.3]),
               ("hicra", 0): (0.75, [0.2, 0.6, 0.7]), ("hicra", 1): (0.625, [0.5, 0.5, 0.9])}
    for (arm, seed), (acc, curve) in planted.items():
        _plant(out, arm, seed, acc, curve)
    res = summarize(out, PRESETS["smoke"], ["grpo", "hicra"], 2)

    def final(arm):  # read back from the run directories, not from `planted`
        return [json.loads((run_dir_for(out, arm, s) / "eval.json").read_text())["final"]["accuracy"]
                for s in range(2)]

    def curve(arm, s):
        log = [json.loads(x) for x in (run_dir_for(out, arm, s) / "train_log.jsonl").read_text().splitlines()]
        return np.array([e["step"] for e in log], float), np.array([e["accuracy"] for e in log], float)

    for arm in ("grpo", "hicra"):
        fa = res["per_arm"][arm]["final_accuracy"]
        assert fa["mean"] == pytest.approx(np.mean(final(arm)))
        assert fa["low"] <= fa["mean"] <= fa["high"]
        assert min(final(arm)) <= fa["low"] and fa["high"] <= max(final(arm))
        aucs = []
        for s in range(2):
            x, y = curve(arm, s)
            aucs.append(np.trapezoid(y, x) / (x[-1] - x[0]))
        assert res["per_arm"][arm]["auc"]["values"] == pytest.approx(aucs)
        # smoke threshold 0.5, window 1: first step whose accuracy is >= 0.5
        firsts = []
        for s in range(2):
            x, y = curve(arm, s)
            hit = np.flatnonzero(y >= 0.5)
            firsts.append(float(x[hit[0]]) if hit.size else None)
        assert res["per_arm"][arm]["steps_to_threshold"]["values"] == firsts
    vs = res["per_arm"]["hicra"]["vs_grpo"]["final_accuracy"]
    a, b = np.array(final("hicra")), np.array(final("grpo"))
    assert vs["diff"] == pytest.approx(a.mean() - b.mean())
    # exact two-sided permutation test (all C(4, 2) relabellings) from scipy
    ref = sps.permutation_test((a, b), lambda u, v: np.mean(u) - np.mean(v), permutation_type="independent",
                               alternative="two-sided", n_resamples=np.inf)
    assert vs["p_value"] == pytest.approx(ref.pvalue)
    # error curves: per-step means over seeds of the logged shares
    for arm in ("grpo", "hicra"):
        logs = [[json.loads(x) for x in (run_dir_for(out, arm, s) / "train_log.jsonl").read_text().splitlines()]
                for s in range(2)]
        want = np.mean([[e["errors_execution_share"] for e in log] for log in logs], axis=0)
        assert res["per_arm"][arm]["curves"]["errors_execution_share_mean"] == pytest.approx(want.tolist())
    # gains over the warm start, greedy and sampled, per seed from eval.json
    for arm in ("grpo", "hicra"):
        evs = [json.loads((run_dir_for(out, arm, s) / "eval.json").read_text()) for s in range(2)]
        got = res["per_arm"][arm]
        assert got["gain"]["values"] == pytest.approx([e["final"]["accuracy"] - e["warm_start"]["accuracy"]
                                                       for e in evs])
        assert got["gain_sampled"]["values"] == pytest.approx(
            [e["final_sampled"]["accuracy"] - e["warm_start_sampled"]["accuracy"] for e in evs])
        assert got["error_order"]["counts"]["too few steps"] == 2  # 3-step smoke runs: no fall can be timed
    # the readable table shows the same numbers
    md = study.results_markdown(res)
    assert f"| hicra | {100 * a.mean():.1f} [" in md
    assert "## Accuracy gain over the warm start" in md and "| too few steps |" in md


def _cli(argv, capsys):
    from hicra.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--arms", "grpo,nope"], "unknown arm"),
    (["--arms", "grpo,grpo"], "listed twice"),
    (["--seeds", "0"], "field 'seeds'"),
    (["--workers", "0"], "field 'workers'"),
])
def test_bad_input_exits_2(extra, needle, tmp_path, capsys):
    pytest.importorskip("hicra.study.cli")
    from hicra.cli import VERB_MODULES

    if "hicra.study.cli" not in VERB_MODULES:
        pytest.skip("study verb not registered")
    code, err = _cli(["study", "--preset", "smoke", "--out", str(tmp_path / "o"), *extra], capsys)
    assert code == 2 and needle in err and "Traceback" not in err
    assert err.startswith("hicra study: error:")


def test_out_is_a_file_or_another_study_exits_2(tmp_path, capsys):
    from hicra.cli import VERB_MODULES

    if "hicra.study.cli" not in VERB_MODULES:
        pytest.skip("study verb not registered")
    f = tmp_path / "file"
    f.write_text("x")
    code, err = _cli(["study", "--preset", "smoke", "--out", str(f)], capsys)
    assert code == 2 and "not a directory" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "study.json").write_text(json.dumps({"format": study.FORMAT, "preset": "quick", "settings": {}}))
    code, err = _cli(["study", "--preset", "smoke", "--out", str(other)], capsys)
    assert code == 2 and "other settings" in err
    with pytest.raises(SystemExit) as exc:
        _cli(["study", "--preset", "huge", "--out", str(other)], capsys)
    assert exc.value.code == 2


def test_run_dead_before_first_checkpoint_restarts_from_scratch(smoke, tmp_path):
    """A run directory with files but no checkpoint and no done.json is redone from scratch (deterministic)."""
    import shutil

    src, _ = smoke
    out = tmp_path / "s"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("results.*", "figures"))
    rd = run_dir_for(out, "grpo", 1)
    (rd / "done.json").unlink()
    shutil.rmtree(rd / "checkpoints")
    (rd / "train_log.jsonl").write_text('{"step": 0, "garbage": true}\n')
    assert study.run_state(rd) == "fresh"
    before = {k: v for k, v in _snapshot(out).items() if "/grpo/seed01/" not in k}
    run_study(out, "smoke", workers=1, progress=False, log=_quiet)
    assert {k: v for k, v in _snapshot(out).items() if k in before} == before  # the others untouched
    done = json.loads((rd / "done.json").read_text())
    assert done["resumed"] is False
    got = (rd / "train_log.jsonl").read_text()
    assert got == (run_dir_for(src, "grpo", 1) / "train_log.jsonl").read_text()


def test_error_fall_order_per_run_and_sign_test():
    """Planted error curves: execution falls around step 20, planning around step 50 (or not at all)."""
    from hicra.study import _order_summary, error_fall_order

    x = np.arange(80)
    early = np.interp(x, [0, 10, 30, 79], [0.5, 0.5, 0.1, 0.1])
    late = np.interp(x, [0, 40, 60, 79], [0.3, 0.3, 0.05, 0.05])
    flat = np.full(80, 0.2)

    def log(ex, pl):
        return [{"step": int(s), "errors_execution_share": float(e), "errors_planning_share": float(p)}
                for s, e, p in zip(x, ex, pl, strict=True)]

    a = error_fall_order(log(early, late))
    assert a["order"] == "execution first"
    assert a["execution"]["half_step"] == pytest.approx(20, abs=1)
    assert a["planning"]["half_step"] == pytest.approx(50, abs=1)
    assert error_fall_order(log(late, early))["order"] == "planning first"
    assert error_fall_order(log(early, flat))["order"] == "only execution falls"
    assert error_fall_order(log(flat, flat))["order"] == "neither falls"
    assert error_fall_order(log(early, late)[:4])["order"] == "too few steps"
    summary = _order_summary(["execution first"] * 7 + ["planning first"] + ["neither falls"] * 3)
    assert summary["counts"]["execution first"] == 7 and summary["n_runs"] == 11
    assert summary["sign_test_p"] == pytest.approx(sps.binomtest(7, 8, 0.5).pvalue)
