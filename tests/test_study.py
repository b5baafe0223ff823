"""`hicra study` on the tiny "smoke" preset: nested (warm-start seed, RL seed) pairs, per-run summary files and
resuming from them alone, resumability, table values vs the run directories, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from hicra import study
from hicra.errors import InputError
from hicra.study import (
    PRESETS,
    plan_runs,
    run_dir_for,
    run_study,
    summarize,
    summary_path_for,
    write_run_summary,
)
from hicra.study.presets import RUN_FORMAT

pytestmark = pytest.mark.xdist_group("study")  # the smoke study fixture is built once


def _quiet(*_a):
    return None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A finished 2-arm smoke study over 2 warm-start seeds x 1 RL seed (pairs (0, 0) and (1, 1000)), run through
    the process pool (2 workers)."""
    out = tmp_path_factory.mktemp("study") / "smoke"
    results = run_study(out, "smoke", seeds=1, warm_start_seeds=2, workers=2, progress=False, log=_quiet)
    return out, results


PAIRS = [(0, 0), (1, 1000)]


def _snapshot(out: Path, *folders: str) -> dict:
    files = [p for f in (folders or ("runs", "summaries")) for p in (out / f).rglob("*") if p.is_file()]
    return {str(p): p.stat().st_mtime_ns for p in files}


def test_layout_and_counts(smoke):
    out, results = smoke
    assert results["arms"] == ["grpo", "hicra"] and results["seeds"] == 1 and results["warm_start_seeds"] == 2
    assert results["pairs"] == [list(p) for p in PAIRS]
    steps = PRESETS["smoke"].rl["steps"]
    models = {}
    for arm in results["arms"]:
        for ws, seed in PAIRS:
            rd = run_dir_for(out, arm, seed, ws)
            assert rd.name == f"ws{ws}-seed{seed:02d}" and rd.parent.name == arm
            done = json.loads((rd / "done.json").read_text())
            assert done["steps"] == steps
            assert done["code"] == study.code_version()  # the code that ran it, kept with the run
            assert len((rd / "train_log.jsonl").read_text().splitlines()) == steps
            run = json.loads((rd / "run.json").read_text())
            assert run["seed"] == seed
            summary = json.loads(summary_path_for(out / "summaries", arm, seed, ws).read_text())
            assert (summary["arm"], summary["warm_start_seed"], summary["seed"]) == (arm, ws, seed)
            assert summary["warm_start_config"]["seed"] == ws
            assert summary["train_curve"]["step"] == list(range(steps))
            assert summary["eval_curve"]["step"][0] == 0 and summary["eval_curve"]["step"][-1] == steps
            assert summary["probes"]["step"] == summary["eval_curve"]["step"]
            models.setdefault(ws, set()).add(json.dumps(summary["warm_start_config"], sort_keys=True))
    # one warm start per warm-start seed, shared by both arms, each built once into the cache
    assert all(len(v) == 1 for v in models.values()) and len(models) == 2
    assert len(list((out / "warmstart").glob("warmstart-*"))) == 2
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["format"] == "hicra-study/2"
    commit = study.code_version()["git_commit"] or "unknown"
    assert on_disk["code_versions"] == {commit: 4}  # 2 arms x 2 pairs, all finished by this code
    assert f"{commit[:12]} (4 runs)" in (out / "results.md").read_text()
    assert on_disk["per_arm"]["grpo"]["n_runs"] == 2 and on_disk["per_arm"]["grpo"]["n_warm_starts"] == 2
    comp = [c for c in on_disk["comparisons"] if c["endpoint"] == "final_accuracy"]
    assert len(comp) == 1 and comp[0]["a"] == "hicra" and comp[0]["pairs"] == [list(p) for p in PAIRS]
    for name in ("accuracy.png", "errors.png", "heldout.png"):
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "results.md").read_text()
    assert "| hicra |" in text
    assert "None" not in text  # a missing value (e.g. no consolidation end) is "-", not Python's None
    # the primary endpoint heads the arm table; the orders and the per-arm probe changes are printed
    assert "| arm | AUC held-out greedy (primary) |" in text and "## Strategy entropy and skill probes" in text
    for arm in results["arms"]:
        a = on_disk["per_arm"][arm]
        assert f"| {arm} | {100 * a['auc_eval']['mean']:.1f} [" in text
        # each probe's change, recomputed from the summaries: last evaluation minus the warm start's
        for name, d in a["probe_change"].items():
            want = []
            for ws, seed in PAIRS:
                pr = json.loads(summary_path_for(out / "summaries", arm, seed, ws).read_text())["probes"][name]
                want.append(pr[-1] - pr[0])
            assert d["values"] == pytest.approx(want) and d["mean"] == pytest.approx(np.mean(want))
            assert d["n_rose"] == sum(w > 0 for w in want)
            assert f"{100 * d['mean']:+.1f} [" in text
        assert set(a["probe_change"]) == {"exec_probe_line_accuracy", "exec_probe_line_prob", "plan_probe_cheapest",
                                          "plan_probe_solved"}
        assert a["phases"]["exploration_tested"] <= a["n_runs"]


def test_finished_runs_are_not_recomputed(smoke):
    out, first = smoke
    before = _snapshot(out)
    again = run_study(out, "smoke", seeds=1, warm_start_seeds=2, workers=2, progress=False, log=_quiet)
    assert _snapshot(out) == before  # no file of any run or summary was rewritten
    assert again["per_arm"]["hicra"]["final_accuracy"] == first["per_arm"]["hicra"]["final_accuracy"]


def test_resume_from_the_summaries_alone(smoke, tmp_path):
    """A new machine: only the summary files (e.g. committed), no run directory and no warm start. Rerunning
    recomputes nothing (no run directory, no warm start is created) and gives the same statistics."""
    import shutil

    src, first = smoke
    root = tmp_path / "committed" / "runs"
    shutil.copytree(src / "summaries", root)
    out = tmp_path / "fresh"
    again = run_study(out, "smoke", seeds=1, warm_start_seeds=2, workers=2, summary_root=root, progress=False,
                      log=_quiet)
    assert not (out / "runs").exists() and not (out / "warmstart").exists()
    for key in ("per_arm", "comparisons", "runs"):
        assert json.dumps(study.runner._json_safe(again[key])) == json.dumps(study.runner._json_safe(first[key]))
    # a deleted run directory whose summary exists is not recomputed either
    out2 = tmp_path / "partial"
    shutil.copytree(src, out2, ignore=shutil.ignore_patterns("results.*", "figures"))
    shutil.rmtree(run_dir_for(out2, "hicra", 1000, 1))
    run_study(out2, "smoke", seeds=1, warm_start_seeds=2, workers=1, progress=False, log=_quiet)
    assert not run_dir_for(out2, "hicra", 1000, 1).exists()
    # a missing summary of a needed pair is an input error naming the file when only statistics are asked for
    (root / "grpo" / "ws1-seed1000.json").unlink()
    with pytest.raises(InputError, match="ws1-seed1000"):
        summarize(root, PRESETS["smoke"], ["grpo", "hicra"], 1, 2)


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
    lines = []
    run_study(out, "smoke", arms=["hicra"], seeds=1, workers=1, cache=ref_out / "warmstart", progress=False,
              log=lambda *a: lines.append(" ".join(map(str, a))), blind=True)
    assert json.loads((rd / "done.json").read_text())["resumed"] is True
    # blind: the finished run's line names it and its seconds, and no figure of it (the no-interim-look rule)
    done_line = [x for x in lines if "ws0 seed 0:" in x]
    assert len(done_line) == 1 and "(resumed)" in done_line[0], lines
    assert "accuracy" not in done_line[0] and "phases" not in done_line[0] and "%" not in done_line[0]
    summary = json.loads(summary_path_for(out / "summaries", "hicra", 0).read_text())
    assert "held-out accuracy" in study.runner._done_line(summary) and "%" in study.runner._done_line(summary)
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


def _rd(out: Path, arm: str, i: int) -> Path:
    """The run directory of the fixture's i-th pair."""
    ws, seed = PAIRS[i]
    return run_dir_for(out, arm, seed, ws)


def _plant(out: Path, arm: str, i: int, final_acc: float, curve: list[float]) -> None:
    """Overwrite a finished run's held-out result and training-accuracy curve with known values."""
    rd = _rd(out, arm, i)
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
    # the per-run summaries of the planted run directories; the statistics read only those
    for spec in plan_runs(out, out / "summaries", PRESETS["smoke"], ["grpo", "hicra"], 1, 2):
        write_run_summary(spec)
    res = summarize(out / "summaries", PRESETS["smoke"], ["grpo", "hicra"], 1, 2)

    def final(arm):  # read back from the run directories, not from `planted`
        return [json.loads((_rd(out, arm, s) / "eval.json").read_text())["final"]["accuracy"]
                for s in range(2)]

    def curve(arm, s):
        log = [json.loads(x) for x in (_rd(out, arm, s) / "train_log.jsonl").read_text().splitlines()]
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
    # exact two-sided paired sign-flip test (all 2^2 sign assignments) from scipy
    ref = sps.permutation_test((a - b,), np.mean, permutation_type="samples", alternative="two-sided",
                               n_resamples=np.inf)
    assert vs["p_value"] == pytest.approx(ref.pvalue)
    assert vs["n_pairs"] == 2 and vs["p_holm"] == pytest.approx(vs["p_value"])  # a family of one comparison
    assert vs["sd_diff"] == pytest.approx(np.std(a - b, ddof=1))
    # error curves: per-step means over seeds of the logged shares
    for arm in ("grpo", "hicra"):
        logs = [[json.loads(x) for x in (_rd(out, arm, s) / "train_log.jsonl").read_text().splitlines()]
                for s in range(2)]
        want = np.mean([[e["errors_execution_share"] for e in log] for log in logs], axis=0)
        assert res["per_arm"][arm]["curves"]["errors_execution_share_mean"] == pytest.approx(want.tolist())
    # gains over the warm start, greedy and sampled, per seed from eval.json
    for arm in ("grpo", "hicra"):
        evs = [json.loads((_rd(out, arm, s) / "eval.json").read_text()) for s in range(2)]
        got = res["per_arm"][arm]
        assert got["gain"]["values"] == pytest.approx([e["final"]["accuracy"] - e["warm_start"]["accuracy"]
                                                       for e in evs])
        assert got["gain_sampled"]["values"] == pytest.approx(
            [e["final_sampled"]["accuracy"] - e["warm_start_sampled"]["accuracy"] for e in evs])
        assert got["error_order"]["counts"]["too few steps"] == 2  # 3-step smoke runs: no fall can be timed
    # the readable table shows the same numbers
    md = study.results_markdown(res)
    row = next(x for x in md.splitlines() if x.startswith("| hicra | "))  # the arm table's row
    assert f" | {100 * a.mean():.1f} [" in row
    assert "## Accuracy gain over the warm start" in md and "| too few steps |" in md
    pooled = res["per_arm"]["hicra"]["phases"]["pooled"]  # the pooled column names the verdict and the order
    assert "pooled verdict (order, confidence)" in md
    assert f"| {pooled['verdict']} ({pooled['order']}, {pooled['confidence']:.2f}) |" in md


def _cli(argv, capsys):
    from hicra.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--arms", "grpo,nope"], "unknown arm"),
    (["--arms", "grpo,grpo"], "listed twice"),
    (["--seeds", "0"], "field 'seeds'"),
    (["--workers", "0"], "field 'workers'"),
    (["--warm-start-seeds", "0"], "field 'warm_start_seeds'"),
    (["--cells", "nope=1"], "unknown corpus knob"),
    (["--cells", "optimum=diverse,nope"], "optimum must be one of"),
    (["--cells", "execution_noise=2"], "in [0, 1]"),
    (["--stop-after", "-1"], "field 'stop_after'"),
    (["--only-warm-starts", "0,x"], "field 'only_warm_starts'"),
    (["--warm-start-seeds", "2", "--only-warm-starts", "2"], "among 0..1"),
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
    # the summary folder too: one folder holds one study's summaries (the controls' and the main study's differ)
    code, err = _cli(["study", "--preset", "smoke", "--out", str(tmp_path / "fresh"), "--summaries", str(other)],
                     capsys)
    assert code == 2 and "other settings" in err and str(other / "study.json") in err
    with pytest.raises(SystemExit) as exc:
        _cli(["study", "--preset", "huge", "--out", str(other)], capsys)
    assert exc.value.code == 2


def test_run_dead_before_first_checkpoint_restarts_from_scratch(smoke, tmp_path):
    """A run directory with files but no checkpoint and no done.json is redone from scratch (deterministic)."""
    import shutil

    src, _ = smoke
    out = tmp_path / "s"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("results.*", "figures"))
    rd = run_dir_for(out, "grpo", 1000, 1)
    (rd / "done.json").unlink()
    summary_path_for(out / "summaries", "grpo", 1000, 1).unlink()
    shutil.rmtree(rd / "checkpoints")
    (rd / "train_log.jsonl").write_text('{"step": 0, "garbage": true}\n')
    assert study.run_state(rd) == "fresh"
    before = {k: v for k, v in _snapshot(out).items() if "ws1-seed1000" not in k or "/hicra/" in k}
    run_study(out, "smoke", seeds=1, warm_start_seeds=2, workers=1, progress=False, log=_quiet)
    assert {k: v for k, v in _snapshot(out).items() if k in before} == before  # the others untouched
    done = json.loads((rd / "done.json").read_text())
    assert done["resumed"] is False
    got = (rd / "train_log.jsonl").read_text()
    assert got == (run_dir_for(src, "grpo", 1000, 1) / "train_log.jsonl").read_text()
    got_s, ref_s = (json.loads(summary_path_for(o / "summaries", "grpo", 1000, 1).read_text()) for o in (out, src))
    for d in (got_s, ref_s):
        d.pop("seconds")
    assert got_s == ref_s


def _cache_with(tmp_path, src, warm_start_seeds):
    """A warm-start cache holding copies of the smoke fixture's warm starts for the given seeds; returns the cache
    and the WarmStartConfig of warm-start seeds 0 and 1."""
    import shutil

    from hicra.lab.sft import WarmStartConfig, warm_start_dir
    from hicra.study import preset_configs

    cfgs = [WarmStartConfig(**preset_configs(PRESETS["smoke"], warm_start_seed=w)[0]) for w in (0, 1)]
    cache = tmp_path / "cache"
    cache.mkdir(parents=True)
    for w in warm_start_seeds:
        shutil.copytree(warm_start_dir(cfgs[w], src / "warmstart"), warm_start_dir(cfgs[w], cache))
    return cache, cfgs


def test_runs_of_cached_warm_starts_start_before_a_build_and_a_worker_builds_the_same_model(smoke, tmp_path):
    """Two workers, warm start 0 cached, warm start 1 not: both runs of warm start 0 start first (a run finishes
    before the build starts), warm start 1 is built once, and the model a worker built is the one this process
    builds, bit for bit (one torch thread each: a worker's build is the same draw as the main process's)."""
    from hicra.lab.sft import warm_start, warm_start_dir

    src, first = smoke
    cache, cfgs = _cache_with(tmp_path, src, [0])
    lines: list[str] = []
    again = run_study(tmp_path / "s", "smoke", seeds=1, warm_start_seeds=2, workers=2, cache=cache,
                      progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    building = [i for i, line in enumerate(lines) if "building" in line]
    assert len(building) == 1 and cfgs[1].key() in lines[building[0]]
    assert sum(line == f"warm start {cfgs[1].key()}: built" for line in lines) == 1
    done_ws0 = [i for i, line in enumerate(lines) if " ws0 seed 0: held-out" in line]
    assert len(done_ws0) == 2 and min(done_ws0) < building[0]
    by_worker = warm_start_dir(cfgs[1], cache) / "model.safetensors"
    here = warm_start(cfgs[1], tmp_path / "inline", progress=False, log=_quiet) / "model.safetensors"
    assert by_worker.read_bytes() == here.read_bytes()
    assert again["per_arm"]["hicra"]["final_accuracy"] == first["per_arm"]["hicra"]["final_accuracy"]


def test_one_worker_also_runs_ready_runs_before_a_build(smoke, tmp_path):
    """workers == 1 keeps the same order: the cached warm start's runs, then the build, then its runs."""
    src, _ = smoke
    cache, cfgs = _cache_with(tmp_path, src, [0])
    lines: list[str] = []
    run_study(tmp_path / "s", "smoke", seeds=1, warm_start_seeds=2, workers=1, cache=cache, progress=False,
              log=lambda *a: lines.append(" ".join(map(str, a))))
    order = [("build" if "building" in line else "ws0" if " ws0 seed 0:" in line else "ws1")
             for line in lines if "building" in line or ": held-out" in line]
    assert order == ["ws0", "ws0", "build", "ws1", "ws1"]


def test_a_failed_job_starts_nothing_new_and_raises(smoke, tmp_path):
    """A run whose config the lab refuses fails in its worker: the run beside it ends (its line is logged) before
    the error is raised, and the runs queued behind them are not started. A warm start that cannot be built (its
    cache folder holds no warm_start.json) fails the same way, after the ready runs, naming the folder."""
    from dataclasses import replace

    from hicra.lab.sft import warm_start_dir
    from hicra.study import execute

    src, _ = smoke
    specs = plan_runs(tmp_path / "s", tmp_path / "sums", PRESETS["smoke"], ["grpo", "hicra"], 1, 2)
    bad = replace(specs[0], config={**specs[0].config, "no_such_field": 1})
    with pytest.raises(TypeError, match="no_such_field"):
        execute([bad, *specs[1:]], workers=1, progress=False, log=_quiet, cache=src / "warmstart")
    assert not any(Path(s.run_dir).exists() for s in specs[1:])
    lines: list[str] = []
    with pytest.raises(TypeError, match="no_such_field"):
        execute([bad, *specs[1:]], workers=2, progress=False, cache=src / "warmstart",
                log=lambda *a: lines.append(" ".join(map(str, a))))
    assert [Path(s.run_dir).exists() for s in specs[1:]] == [True, False, False]
    assert any("failed (TypeError" in line for line in lines)
    assert any(": held-out" in line for line in lines)  # the run beside it ended and was counted first

    cache, cfgs = _cache_with(tmp_path / "b", src, [0])
    warm_start_dir(cfgs[1], cache).mkdir()  # left behind by hand: not a finished warm start
    specs = plan_runs(tmp_path / "b" / "s", tmp_path / "b" / "sums", PRESETS["smoke"], ["grpo", "hicra"], 1, 2)
    with pytest.raises(InputError, match="no warm_start.json"):
        execute(specs, workers=2, progress=False, log=_quiet, cache=cache)
    assert [Path(s.run_dir).exists() for s in specs] == [True, True, False, False]


def test_stop_after_runs_a_study_in_parts(smoke, tmp_path, capsys, monkeypatch):
    """--stop-after 0 starts nothing and writes no statistics (exit 0, a line saying how many runs are left); a
    deadline that passes while the first run is running lets that run finish and starts no other; rerunning
    without a limit completes the study with the same statistics as the uninterrupted fixture."""
    import hicra.study.runner as runner
    from hicra.cli import main

    src, first = smoke
    out = tmp_path / "parts"
    args = ["study", "--preset", "smoke", "--seeds", "1", "--warm-start-seeds", "2", "--workers", "1", "--cache",
            str(src / "warmstart"), "--out", str(out), "--quiet"]
    assert main([*args, "--stop-after", "0"]) == 0
    printed = capsys.readouterr()
    assert "0 of 4 runs summarised" in printed.out and "4 run(s) not started" in printed.err
    assert not (out / "runs").exists() and not (out / "results.json").exists()

    real_run_one, passed = runner.run_one, []

    def run_then_time_is_up(spec):
        passed.append(spec.label)
        return real_run_one(spec)

    monkeypatch.setattr(runner, "run_one", run_then_time_is_up)
    monkeypatch.setattr(runner, "_now", lambda: float("inf") if passed else 0.0)
    part = run_study(out, "smoke", seeds=1, warm_start_seeds=2, workers=1, cache=src / "warmstart",
                     progress=False, log=_quiet, stop_after=60.0)
    assert part == {"complete": False, "n_summarised": 1, "n_runs": 4,
                    "wall_seconds_this_invocation": part["wall_seconds_this_invocation"]}
    assert len(passed) == 1 and not (out / "results.json").exists()
    monkeypatch.undo()
    whole = run_study(out, "smoke", seeds=1, warm_start_seeds=2, workers=1, cache=src / "warmstart",
                      progress=False, log=_quiet)
    assert whole["complete"] is True and (out / "results.json").exists()
    assert json.dumps(study.runner._json_safe(whole["per_arm"])) == json.dumps(study.runner._json_safe(first["per_arm"]))


def test_only_warm_starts_runs_one_warm_start_at_a_time(smoke, tmp_path, capsys):
    """--only-warm-starts 1 builds and runs only warm start 1's runs and writes no statistics; --only-warm-starts 0
    then completes the study with the uninterrupted fixture's statistics, and every group's runs share one build."""
    from hicra.cli import main

    src, first = smoke
    out = tmp_path / "by-ws"
    args = ["study", "--preset", "smoke", "--seeds", "1", "--warm-start-seeds", "2", "--workers", "1", "--cache",
            str(src / "warmstart"), "--out", str(out), "--quiet"]
    assert main([*args, "--only-warm-starts", "1"]) == 0
    assert "ran only warm-start seed(s) 1: 2 of 4 runs summarised" in capsys.readouterr().out
    done = sorted(p.relative_to(out / "summaries").as_posix() for p in (out / "summaries").rglob("ws*.json"))
    assert done == ["grpo/ws1-seed1000.json", "hicra/ws1-seed1000.json"]
    assert not (out / "results.json").exists()
    assert main([*args, "--only-warm-starts", "0"]) == 0
    whole = json.loads((out / "results.json").read_text())
    assert json.dumps(whole["per_arm"]) == json.dumps(study.runner._json_safe(first["per_arm"]))
    assert whole["warm_start_builds"] == {"groups": 2, "rebuilt": []}
    assert "each of the 2 (cell, warm-start seed) groups' runs started from one build" in \
        (out / "results.md").read_text()


def test_warm_start_builds_flags_a_group_whose_runs_started_from_different_builds(smoke):
    """A run of warm start 1 whose warm-start evaluation differs (a rebuild on another machine) is flagged, with
    both builds' accuracies and which runs came from which; the report says it is a deviation."""
    from hicra.study.report import results_markdown
    from hicra.study.statistics import warm_start_builds

    src, first = smoke
    runs = [json.loads(p.read_text()) for p in sorted((src / "summaries").rglob("ws*.json"))]
    assert warm_start_builds(runs) == {"groups": 2, "rebuilt": []}
    other = next(r for r in runs if r["warm_start_seed"] == 1 and r["arm"] == "hicra")
    acc = other["eval"]["warm_start"]["accuracy"]
    other["eval"]["warm_start"] = {**other["eval"]["warm_start"], "accuracy": acc + 0.01}
    flagged = warm_start_builds(runs)
    assert flagged["groups"] == 2 and len(flagged["rebuilt"]) == 1
    bad = flagged["rebuilt"][0]
    assert (bad["cell"], bad["warm_start_seed"], bad["n_builds"]) == ("", 1, 2)
    assert bad["accuracies"] == [acc, acc + 0.01] and bad["runs"] == [["grpo/seed1000"], ["hicra/seed1000"]]
    md = results_markdown({**first, "warm_start_builds": flagged})
    assert "**Deviation: warm starts rebuilt.** In 1 of 2" in md and f"{acc:.1%}, {acc + 0.01:.1%}" in md


def test_error_fall_order_per_run_and_sign_test():
    """Planted error curves: execution falls around step 20, planning around step 50 (or not at all)."""
    from hicra.study import error_fall_order
    from hicra.study.statistics import _order_summary

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


def test_knob_cells_plan_the_grid(tmp_path):
    """--cells: every combination of knob settings is a cell; each (cell, arm, pair) gets its run directory under
    runs/CELL/ARM/, a warm start with the cell's knobs and warm-start seed, and the cell's optimum in RL."""
    from hicra.study import parse_cells

    cells = parse_cells("execution_noise=0,0.05;strategy_prior=oracle,blind-common;optimum=diverse,single-route")
    assert len(cells) == 8 and cells == PRESETS["controls"].cells
    assert cells["exec0.05_prior-oracle_opt-single-route"] == {"execution_noise": 0.05, "strategy_prior": "oracle",
                                                               "optimum": "single-route"}
    from dataclasses import replace

    preset = replace(PRESETS["smoke"], cells=cells)
    specs = plan_runs(tmp_path, tmp_path / "sum", preset, ["grpo", "hicra"], 2, 2)
    assert len(specs) == 8 * 2 * 4
    for sp in specs:
        assert Path(sp.run_dir) == tmp_path / "runs" / sp.cell / sp.arm / f"ws{sp.warm_start_seed}-seed{sp.seed:02d}"
        assert sp.seed // 1000 == sp.warm_start_seed  # RL seeds nested in their warm start
        assert sp.warm_start["seed"] == sp.warm_start_seed
        assert {k: sp.warm_start[k] for k in sp.knobs} == sp.knobs and sp.config["optimum"] == sp.knobs["optimum"]
    # every arm on the same pairs
    pairs = {a: sorted((s.cell, s.warm_start_seed, s.seed) for s in specs if s.arm == a) for a in ("grpo", "hicra")}
    assert pairs["grpo"] == pairs["hicra"]


def test_controls_rerun_changes_only_the_high_noise_level():
    """controls2 (docs/study.md, D3): the first controls' cells, seeds, steps and arms with execution noise 0.10
    for "high", read by phase verdict rules v3; its criteria are the same six, each matching the same cell of its own grid (the first controls'
    criteria match none of its noisy cells, so summarising it by them would leave them untested)."""
    from dataclasses import asdict

    from hicra.study.presets import CONTROL_CRITERIA

    one, two = PRESETS["controls"], PRESETS["controls2"]
    own = ("name", "description", "cells", "criteria", "phase_version")
    assert {k: v for k, v in asdict(one).items() if k not in own} == {k: v for k, v in asdict(two).items() if k not in own}
    assert (one.phase_version, two.phase_version) == (2, 3)  # the first study's summaries predate rules v3
    swap = {0.05: 0.10, 0.0: 0.0}
    assert sorted(two.cells.values(), key=str) == sorted(
        ({**k, "execution_noise": swap[k["execution_noise"]]} for k in one.cells.values()), key=str)
    assert [c.name for c in two.criteria] == [c.name for c in CONTROL_CRITERIA] and one.criteria == ()
    from hicra.study.statistics import control_checks

    runs = [{"arm": "grpo", "cell": n, "phases": {"exploration_detected": False, "order": "none",
                                                  "exploration_tested": True, "exploration_measure": "strategy"}}
            for n in two.cells for _ in range(6)]
    pooled = {(n, "grpo"): "none" for n in two.cells}
    mine = {c["name"]: c for c in control_checks(runs, two.cells, two.criteria, pooled)["criteria"]}
    first = {c["name"]: c for c in control_checks(runs, two.cells, None, pooled)["criteria"]}
    for name, c in mine.items():
        assert c["reason"] is None and c["n_runs"] >= 6, name
    assert first["execution-first-high-execution-oracle-plan-diverse"]["reason"] == "no cell matches"
    assert mine["execution-first-high-execution-oracle-plan-diverse"]["cells"] == [
        "exec0.1_prior-oracle_opt-diverse"]


def test_controls3_is_controls2_with_capped_noisy_blind_slips_fresh_seeds_and_a_heldout_reading(tmp_path):
    """controls3 (docs/study.md, D4): controls2's arm, steps, seeds per cell and criteria names, with slip_cap 1 on
    the noisy blind cells only (the noisy oracle cells stay as in controls2), warm-start seeds 2-3 (fresh: clean runs
    are deterministic), held-out strategies recorded (strategy_k 8) and both exploration criteria read on complete
    held-out problems."""
    from dataclasses import asdict

    from hicra.study.runner import plan_runs

    two, three = PRESETS["controls2"], PRESETS["controls3"]
    own = ("name", "description", "cells", "criteria", "first_warm_start_seed", "rl")
    assert {k: v for k, v in asdict(two).items() if k not in own} == {
        k: v for k, v in asdict(three).items() if k not in own}
    assert three.rl == {**two.rl, "strategy_k": 8} and three.first_warm_start_seed == 2
    capped = [{**k, "slip_cap": 1} if k["execution_noise"] > 0 and k["strategy_prior"] == "blind-common" else k
              for k in two.cells.values()]
    assert sorted(three.cells.values(), key=str) == sorted(capped, key=str)
    assert [c.name for c in three.criteria] == [c.name for c in two.criteria]
    explore = {c.name: c.statistic for c in three.criteria if not c.statistic.startswith("pooled-order")}
    assert explore == {"exploration-where-possible": "heldout-strategy-rise-complete",
                       "no-exploration-where-impossible": "heldout-strategy-rise-complete"}
    same = [(a.name, a.where, a.at_least, a.at_most) for a in two.criteria]
    assert same == [(c.name, c.where, c.at_least, c.at_most) for c in three.criteria]
    specs = plan_runs(tmp_path, tmp_path / "s", three, ["grpo"], three.seeds, three.warm_start_seeds)
    assert sorted({(s.warm_start_seed, s.seed) for s in specs}) == [(2, 2000), (2, 2001), (2, 2002),
                                                                     (3, 3000), (3, 3001), (3, 3002)]
    assert len(specs) == 8 * 6 and all(s.config["strategy_k"] == 8 for s in specs)
    noisy_blind = [s for s in specs if s.knobs["execution_noise"] > 0 and s.knobs["strategy_prior"] == "blind-common"]
    assert len(noisy_blind) == 12 and all(s.warm_start["slip_cap"] == 1 for s in noisy_blind)
    others = [s for s in specs if s not in noisy_blind]
    assert len(others) == 36 and all(s.warm_start.get("slip_cap", 0) == 0 for s in others)
    # every criterion pools the cells it is meant to (control_checks' own matching): the capped blind cells and the
    # uncapped oracle ones alike
    from hicra.study.statistics import control_checks

    runs = [{"arm": "grpo", "cell": n, "phases": {"order": "none"}} for n in three.cells]
    got = {c["name"]: c["cells"] for c in control_checks(runs, three.cells, three.criteria)["criteria"]}
    blind_d = ["exec0.0_prior-blind-common_opt-diverse", "exec0.1_prior-blind-common_cap1_opt-diverse"]
    assert got["exploration-where-possible"] == blind_d
    assert got["no-exploration-where-impossible"] == sorted(set(three.cells) - set(blind_d))
    assert got["execution-first-high-execution-oracle-plan-single-route"] == ["exec0.1_prior-oracle_opt-single-route"]
    assert got["execution-first-high-execution-oracle-plan-diverse"] == ["exec0.1_prior-oracle_opt-diverse"]
    assert got["planning-first-none-execution-blind-plan-diverse"] == ["exec0.0_prior-blind-common_opt-diverse"]
    assert got["planning-first-none-execution-blind-plan-single-route"] == [
        "exec0.0_prior-blind-common_opt-single-route"]


def test_favourite_share_is_a_cell_knob_with_its_own_name_and_range():
    from hicra.errors import InputError
    from hicra.study import parse_cells

    cells = parse_cells("strategy_prior=blind-common;favourite_share=0,0.6")
    assert set(cells) == {"prior-blind-common_fav0.0", "prior-blind-common_fav0.6"}  # distinct names, KNOBS order
    assert cells["prior-blind-common_fav0.6"] == {"strategy_prior": "blind-common", "favourite_share": 0.6}
    with pytest.raises(InputError, match=r"favourite_share must be in \[0, 1\)"):
        parse_cells("favourite_share=1")


def test_slip_cap_is_a_cell_knob_of_whole_numbers():
    from hicra.errors import InputError
    from hicra.study import parse_cells

    cells = parse_cells("execution_noise=0.1;slip_cap=0,1")
    assert set(cells) == {"exec0.1_cap0", "exec0.1_cap1"}
    assert cells["exec0.1_cap1"] == {"execution_noise": 0.1, "slip_cap": 1}
    for bad in ("1.5", "-1", "x"):
        with pytest.raises(InputError, match="slip_cap must be a whole number"):
            parse_cells(f"slip_cap={bad}")


def test_control_checks_pool_matching_cells_and_apply_thresholds():
    """CONTROL_CRITERIA on hand-built per-run entries: each criterion pools the GRPO runs of the cells whose knobs
    match one of its `where` dicts (floats compared as numbers), counts the runs showing its statistic among the
    testable ones and passes by its threshold; too few runs in a cell, an untestable run or no matching cell make
    it "not tested", and then not all controls pass."""
    from hicra.study.presets import CONTROL_CRITERIA
    from hicra.study.report import results_markdown
    from hicra.study.statistics import ORDERS, control_checks

    cells = PRESETS["controls"].cells

    def run(cell, explore, order, arm="grpo", tested=True, measure="strategy"):
        return {"arm": arm, "cell": cell, "phases": {"exploration_detected": explore, "order": order,
                                                     "exploration_tested": tested, "exploration_measure": measure}}

    def expected_order(k):
        if k["execution_noise"] > 0 and k["strategy_prior"] == "oracle":
            return "execution-first"
        if k["execution_noise"] == 0 and k["strategy_prior"] == "blind-common":
            return "planning-first"
        return "simultaneous"

    runs = []
    for name, k in cells.items():
        blind_diverse = k["strategy_prior"] == "blind-common" and k["optimum"] == "diverse"
        runs += [run(name, blind_diverse, expected_order(k)) for _ in range(6)]  # 2 warm starts x 3 RL seeds
        # other arms are never pooled, whatever they show
        runs += [run(name, not blind_diverse, "none", arm="hicra") for _ in range(6)]
    # the order criteria read each cell's pooled order (here: what its runs show; HICRA's pooled orders are wrong)
    pooled = {(n, "grpo"): expected_order(k) for n, k in cells.items()} | {(n, "hicra"): "none" for n in cells}
    ok = control_checks(runs, cells, pooled_orders=pooled)
    by = {c["name"]: c for c in ok["criteria"]}
    assert ok["all_passed"] and len(by) == len(CONTROL_CRITERIA) == 6
    assert by["exploration-where-possible"]["cells"] == sorted(
        n for n, k in cells.items() if k["strategy_prior"] == "blind-common" and k["optimum"] == "diverse")
    assert (by["exploration-where-possible"]["n_runs"], by["exploration-where-possible"]["hits"]) == (12, 12)
    # the negative control pools the union: single-route or oracle, 6 of the 8 cells
    neg = by["no-exploration-where-impossible"]
    assert len(neg["cells"]) == 6 and (neg["n_runs"], neg["hits"]) == (36, 0)
    orders = [c for c in by.values() if c["statistic"].startswith("pooled-order:")]
    assert len(orders) == 4
    for c in orders:  # one cell each: noise x prior x optimum
        assert len(c["cells"]) == 1 and (c["n_runs"], c["hits"]) == (6, 6), c["name"]
        assert c["pooled"] == {c["cells"][0]: c["statistic"].partition(":")[2]}

    def edit(idx, **phases):
        return [dict(r, phases={**r["phases"], **phases}) if i in idx else r for i, r in enumerate(runs)]

    def passed(rs, name, pooled_orders=pooled):
        return {c["name"]: c for c in control_checks(rs, cells, pooled_orders=pooled_orders)["criteria"]}[name]

    grpo = [i for i, r in enumerate(runs) if r["arm"] == "grpo"]
    explorers = [i for i in grpo if runs[i]["phases"]["exploration_detected"]]
    # 10/12 = 0.83 >= 0.8 passes, 9/12 fails
    assert passed(edit(explorers[:2], exploration_detected=False), "exploration-where-possible")["passed"] is True
    assert passed(edit(explorers[:3], exploration_detected=False), "exploration-where-possible")["passed"] is False
    # 3/36 = 0.083 <= 0.1 passes, 4/36 = 0.11 fails, also spread over oracle and single-route cells
    impossible = [i for i in grpo if i not in explorers]
    spread = ([i for i in impossible if cells[runs[i]["cell"]]["optimum"] == "single-route"
               and cells[runs[i]["cell"]]["strategy_prior"] == "blind-common"][:2]
              + [i for i in impossible if cells[runs[i]["cell"]]["strategy_prior"] == "oracle"
                 and cells[runs[i]["cell"]]["optimum"] == "diverse"][:2])
    assert passed(edit(spread[1:], exploration_detected=True), "no-exploration-where-impossible")["passed"] is True
    assert passed(edit(spread, exploration_detected=True), "no-exploration-where-impossible")["passed"] is False
    # an order cell: the pooled order decides, whatever share of its runs shows the order on their own
    name = "planning-first-none-execution-blind-plan-single-route"
    cell = by[name]["cells"][0]
    idx = [i for i in grpo if runs[i]["cell"] == cell]
    c = passed(edit(idx[:5], order="simultaneous"), name)
    assert c["passed"] is True and (c["hits"], c["share"]) == (1, 1 / 6)
    for other in ("simultaneous", "execution-first", "none"):
        assert passed(runs, name, pooled | {(cell, "grpo"): other})["passed"] is False
    for missing in ("untestable", None):  # no pooled order: not tested
        c = passed(runs, name, pooled | {(cell, "grpo"): missing})
        assert c["passed"] is None and c["reason"] == f"no pooled order in {cell}"
    assert passed(runs, name, {})["passed"] is None
    # untestable runs do not count as "no exploration": the criterion is not tested
    for phases, crit in (({"exploration_tested": False}, "no-exploration-where-impossible"),
                         ({"exploration_measure": "planning-phrases"}, "no-exploration-where-impossible")):
        target = [next(i for i in grpo if runs[i]["cell"] in by[crit]["cells"])]
        c = passed(edit(target, **phases), crit)
        assert c["passed"] is None and c["untested"] == 1 and "could not be tested" in c["reason"], crit
    # an untestable run is left out of the description of a pooled-order criterion, which the pooled order decides
    c = passed(edit(idx[:1], order="untestable"), name)
    assert c["passed"] is True and c["untested"] == 1 and c["hits"] == 5
    # too few runs in a matched cell: not tested
    c = passed([r for i, r in enumerate(runs) if i != idx[0]], name)
    assert c["passed"] is None and "fewer than 6 runs" in c["reason"]
    # cells without the clean-execution level: those criteria are not tested, so not everything passes
    partial = {n: k for n, k in cells.items() if k["execution_noise"] > 0}
    res = control_checks([r for r in runs if r["cell"] in partial], partial, pooled_orders=pooled)
    nt = {c["name"]: c for c in res["criteria"]}[name]
    assert nt["passed"] is None and nt["n_runs"] == 0 and nt["reason"] == "no cell matches"
    assert not res["all_passed"]
    md = results_markdown({"preset": "controls", "warm_start_seeds": 1, "seeds": 3, "pairs": [], "threshold": 0.3,
                           "per_arm": {}, "comparisons": [], "runs": [], "controls": res,
                           "error_order": {"counts": {o: 0 for o in ORDERS}, "n_runs": 0, "sign_test_p": 1.0}})
    assert "## Control checks" in md and "not tested (no cell matches)" in md and "All passed: **no**" in md


def test_control_checks_read_the_heldout_strategy_rise():
    """Statistic "heldout-strategy-rise": a hit is a run whose held-out strategy entropy change reads "rise"; runs
    without the record (no `RLConfig.strategy_k`) make the criterion not tested, never a miss."""
    from hicra.study.presets import ControlCriterion
    from hicra.study.statistics import control_checks

    cells = {"a": {"optimum": "diverse"}, "b": {"optimum": "single-route"}}
    crit = (ControlCriterion("rise", ({"optimum": "diverse"},), "heldout-strategy-rise", at_least=0.8,
                             min_runs_per_cell=5),)

    def run(cell, reading):
        entry = {"arm": "grpo", "cell": cell, "phases": {"exploration_detected": reading == "fall"}}
        return entry if reading is None else {**entry, "strategy_change": {"reading": reading}}

    runs = [run("a", "rise")] * 4 + [run("a", "-")] + [run("b", "rise")] * 5  # cell b is not pooled
    c = control_checks(runs, cells, crit)["criteria"][0]
    assert (c["n_runs"], c["hits"], c["share"], c["passed"]) == (5, 4, 0.8, True)  # the phases brief is not read
    c = control_checks(runs[1:5] + [run("a", "fall")] + runs[5:], cells, crit)["criteria"][0]
    assert (c["hits"], c["passed"]) == (3, False)
    c = control_checks([run("a", None)] + runs[1:], cells, crit)["criteria"][0]
    assert c["passed"] is None and c["untested"] == 1 and "could not be tested" in c["reason"]


def test_control_checks_read_the_heldout_strategy_rise_on_complete_problems():
    """Statistic "heldout-strategy-rise-complete": a hit is a run whose H|fam change on complete problems has its
    interval above 0, whatever the all-problem reading; a run without the record, or with fewer than 2 complete
    problems (interval None), makes the criterion not tested."""
    from hicra.study.presets import ControlCriterion
    from hicra.study.statistics import control_checks

    cells = {"a": {"optimum": "diverse"}}
    crit = (ControlCriterion("rise", ({"optimum": "diverse"},), "heldout-strategy-rise-complete", at_least=0.6,
                             min_runs_per_cell=5),)

    def run(interval, reading="-"):
        entry = {"arm": "grpo", "cell": "a", "phases": {}}
        return entry if interval is False else {**entry, "strategy_change": {
            "reading": reading, "Hfam_complete_interval": interval}}

    runs = [run([0.01, 0.2])] * 3 + [run([-0.1, 0.1], "rise"), run([-0.3, -0.1], "rise")]
    c = control_checks(runs, cells, crit)["criteria"][0]
    assert (c["n_runs"], c["hits"], c["share"], c["passed"]) == (5, 3, 0.6, True)
    c = control_checks(runs[1:] + [run([0.0, 0.2])], cells, crit)["criteria"][0]  # 0 is not above 0
    assert (c["hits"], c["passed"]) == (2, False)
    for missing in (run(None), run(False)):
        c = control_checks(runs[1:] + [missing], cells, crit)["criteria"][0]
        assert c["passed"] is None and c["untested"] == 1 and "could not be tested" in c["reason"]


def test_study_settings_omit_later_warm_start_fields_at_their_defaults():
    """A study directory records the warm start's `settings()`: fields added later (lr_floor, ema_decay) appear
    only when set, so study directories made before them still resume."""
    from dataclasses import replace

    from hicra.study.presets import study_settings

    ws = study_settings(PRESETS["smoke"])["warm_start"]
    assert "lr_floor" not in ws and "ema_decay" not in ws and "epochs" in ws
    ws = study_settings(replace(PRESETS["smoke"], warm_start={**PRESETS["smoke"].warm_start, "ema_decay": 0.9}))
    assert ws["warm_start"]["ema_decay"] == 0.9


def test_main_preset_evaluates_on_512_held_out_problems_with_the_lab_defaults_warm_starts():
    """The pre-registered main study (docs/study.md, 5.): the lab's `default` runs with 512 held-out problems
    instead of 256, and otherwise the same warm start and RL settings, so its warm starts are the lab preset's own
    (the same cache keys) and the first 256 of its held-out problems are the lab's."""
    from dataclasses import asdict

    from hicra.lab.presets import get_preset
    from hicra.lab.sft import eval_problems
    from hicra.study.presets import MAIN_N_EVAL, preset_configs

    ws_study, rl_study = preset_configs(PRESETS["main"], warm_start_seed=2)
    ws_lab, rl_lab = get_preset("default", warm_start_seed=2)
    assert ws_study == ws_lab.settings()
    assert rl_study["n_eval"] == MAIN_N_EVAL == 512 and rl_lab.n_eval == 256
    lab = asdict(rl_lab)
    assert {k: v for k, v in rl_study.items() if k != "n_eval"} == {k: lab[k] for k in rl_study if k != "n_eval"}
    assert preset_configs(PRESETS["controls"])[1]["n_eval"] == rl_lab.n_eval  # the controls keep the lab's 256
    task = ws_lab.task_mix()
    big, small = eval_problems(task, MAIN_N_EVAL), eval_problems(task, rl_lab.n_eval)
    assert len({p.id for p in big}) == MAIN_N_EVAL and [p.id for p in big[:rl_lab.n_eval]] == [p.id for p in small]


def test_order_readings_benchmark_reads_probe_rises_and_error_falls(tmp_path, capsys, benchmark_script):
    """benchmarks/order_readings.py: an execution probe that rises by step 60 and a planning probe that rises by
    step 180 read `execution first`, with half-rise steps from `half_fall_step` on the negated curves computed here;
    the error-share order is `error_fall_order`'s; flat probes read `neither rises`; a run without probes.jsonl
    gives one line naming the file and exit code 2."""
    from hicra.stats import half_fall_step

    mod = benchmark_script("order_readings")
    steps = list(range(0, 340, 20))
    ex = [0.80 if s < 60 else 0.86 for s in steps]
    pl = [0.30 if s < 180 else 0.50 for s in steps]
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"phases": {"order": "simultaneous", "evidence": {"order": {
        "consolidates": {"execution": True, "planning": False, "reference": True}}}}}))
    probes = [{"step": s, "exec_probe_line_prob": e, "plan_probe_cheapest": p} for s, e, p in zip(steps, ex, pl, strict=True)]
    (run / "probes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in probes))
    log = [{"step": s, "errors_execution_share": 0.5 if s < 100 else 0.3, "errors_planning_share": 0.02}
           for s in range(320)]
    (run / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    r = mod.readings(run)
    assert r["probes"] == "execution first" and r["perplexity"] == "simultaneous"
    assert r["consolidates"] == ["execution", "reference"]
    assert r["probe_execution"]["half_step"] == half_fall_step(steps, [-v for v in ex])["half_step"]
    assert r["probe_planning"]["half_step"] == half_fall_step(steps, [-v for v in pl])["half_step"]
    assert r["probe_execution"]["half_step"] < r["probe_planning"]["half_step"]
    assert r["probe_execution"]["start"] == pytest.approx(0.80) and r["probe_planning"]["end"] == pytest.approx(0.50)
    assert r["errors"] == study.error_fall_order(log) and r["errors"]["order"] == "only execution falls"
    assert mod.probe_order({"half_step": None}, {"half_step": None}) == "neither rises"
    assert mod.main([str(run)]) == 0 and "execution first" in capsys.readouterr().out
    (run / "probes.jsonl").unlink()
    assert mod.main([str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / "probes.jsonl") in err[0]


def test_control_classes_benchmark_summarises_classes_and_names_a_missing_summary(tmp_path, capsys,
                                                                                 benchmark_script):
    """benchmarks/control_classes.py: per class, the runs whose own test consolidates, the median p, the mean drop
    and noise SD, and the mean curve's ends; the falls beyond the reference class's; the window means of the
    strategy entropy and the format-error share; the means of the held-out
    accuracy, the error shares and the probes, and the probe orders: each checked against numpy or by hand on two
    planted runs. A folder without the preset's summaries gives one line naming the first missing file, exit 2."""
    mod = benchmark_script("control_classes")
    steps = 40
    runs = []
    for i, (det, p, drop) in enumerate([(True, 0.01, 0.02), (False, 0.30, 0.005)]):
        curve = np.linspace(1.0, 1.0 - drop, steps)
        tests = {k: {"detected": det if k == "execution" else False, "p_value": p, "drop": drop}
                 for k in mod.CLASSES}
        runs.append({"phases": {"evidence": {"consolidation": tests, "order": {
            "noise_sd": {k: 0.001 * (i + 1) for k in mod.CLASSES}}}},
            "metrics": {f"rel_ppl_{k}": curve.tolist() for k in mod.CLASSES},
            "eval": {w: {"accuracy": a, "errors_execution_share": 0.5 - a, "errors_planning_share": 0.1 * i,
                         "errors_format_share": 0.0} for w, a in (("warm_start", 0.2 + i / 10), ("final", 0.4))}})
    # run 0: the execution probe rises at step 10, the planning probe at step 30; run 1: only planning rises
    ps = list(range(0, 200, 10))
    runs[0]["probes"] = {"step": ps, "exec_probe_line_prob": [0.8 if t < 50 else 0.9 for t in ps],
                         "plan_probe_cheapest": [0.2 if t < 120 else 0.5 for t in ps]}
    runs[1]["probes"] = {"step": ps, "exec_probe_line_prob": [0.8] * len(ps),
                         "plan_probe_cheapest": [0.2 if t < 50 else 0.5 for t in ps]}
    assert mod.probe_rows(runs) == {"exec_probe_line_prob": (pytest.approx(0.8), pytest.approx(0.85)),
                                    "plan_probe_cheapest": (pytest.approx(0.2), pytest.approx(0.5))}
    assert mod.probe_orders(runs) == {"execution first": 1, "only planning rises": 1}
    for i, r in enumerate(runs):  # 32 steps: windows [0, 2), [2, 8), [8, 16), [16, 32)
        r["metrics"]["strategy_entropy"] = [float(t + i) for t in range(32)]
        r["train_curve"] = {"errors_format_share": [0.5 if t < 8 else 0.1 for t in range(32)]}
    wm = mod.window_means(runs)
    assert wm["strategy_entropy"] == pytest.approx([0.5 + 0.5, 4.5 + 0.5, 11.5 + 0.5, 23.5 + 0.5])
    assert wm["errors_format_share"] == pytest.approx([0.5, 0.5, 0.1, 0.1])
    ev = mod.eval_rows(runs)
    assert ev["warm_start"]["accuracy"] == pytest.approx(0.25) and ev["final"]["execution"] == pytest.approx(0.1)
    assert ev["warm_start"]["planning"] == pytest.approx(0.05) and ev["final"]["format"] == 0.0
    # the planted curves fall by `drop` over 40 steps in every class, so no class falls beyond the reference
    assert mod.excess_falls(runs) == {"execution": (pytest.approx(0.0), 0), "planning": (pytest.approx(0.0), 0)}
    runs[0]["metrics"]["rel_ppl_planning"] = np.linspace(1.0, 0.9, steps).tolist()
    step_fall = lambda c: np.mean(c[:mod.EDGE]) - np.mean(c[-mod.EDGE:])  # noqa: E731
    want = (step_fall(np.linspace(1.0, 0.9, steps)) - step_fall(np.linspace(1.0, 0.98, steps))) / 2
    assert mod.excess_falls(runs)["planning"] == (pytest.approx(want), 1)
    runs[0]["metrics"]["rel_ppl_planning"] = runs[0]["metrics"]["rel_ppl_execution"]
    rows = mod.cell_rows(runs)
    ex = rows["execution"]
    assert ex["detected"] == 1 and ex["n"] == 2 and rows["planning"]["detected"] == 0
    assert ex["median_p"] == pytest.approx(np.median([0.01, 0.30]))
    assert ex["drop"] == pytest.approx(0.0125) and ex["noise_sd"] == pytest.approx(0.0015)
    both = np.array([np.linspace(1.0, 0.98, steps), np.linspace(1.0, 0.995, steps)])
    assert ex["first"] == pytest.approx(both[:, :mod.EDGE].mean())
    assert ex["last"] == pytest.approx(both[:, -mod.EDGE:].mean())
    # error shares: run 0's execution errors halve their fall by step 5, its planning errors by step 25; run 1's
    # execution errors stay flat while its planning errors fall
    runs[0]["log"] = [{"step": x, "errors_execution_share": 0.5 if x < 5 else 0.2,
                       "errors_planning_share": 0.3 if x < 25 else 0.1} for x in range(40)]
    runs[1]["log"] = [{"step": x, "errors_execution_share": 0.4, "errors_planning_share": 0.3 if x < 10 else 0.1}
                      for x in range(40)]
    runs[0]["phases"]["order"], runs[1]["phases"]["order"] = "execution-first", "none"
    assert mod.reading_orders(runs) == {"perplexity": {"execution-first": 1, "none": 1},
                                        "error shares": {"execution first": 1, "only planning falls": 1}}
    assert mod.main([str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none" in err[0] and "ws0-seed00.json" in err[0]


def test_first_controls_pool_as_committed_under_the_v2_rules():
    """The first controls study's summaries (phase verdict v2) pooled again by today's code, with the rules their
    `phases.version` names (`config_for_phases`), give the pooled verdict committed in
    docs/findings/v2/controls/results.json, here for a noisy and a clean cell (the whole file reproduces by
    `hicra study --preset controls --summaries docs/findings/v2/runs`: docs/study.md, D3). Summarising them by
    a preset that reads v3 is refused, naming the first summary and the field."""
    import json

    from hicra.dynamics.phases import config_for_phases, detect_phases_pooled
    from hicra.study.presets import study_pairs, summary_path_for
    from hicra.study.statistics import load_summary

    root = Path(__file__).resolve().parents[1] / "docs" / "findings" / "v2"
    committed = json.loads((root / "controls" / "results.json").read_text())["per_arm"]
    for cell in ("exec0.05_prior-oracle_opt-diverse", "exec0.0_prior-blind-common_opt-single-route"):
        runs = [load_summary(summary_path_for(root / "runs", "grpo", q.seed, q.warm_start_seed, cell))
                for q in study_pairs(2, 3)]
        config = config_for_phases([r["phases"] for r in runs])
        assert config.version == 2 == PRESETS["controls"].phase_version
        pooled = detect_phases_pooled([r["metrics"] for r in runs], config)
        want = committed[f"{cell}/grpo"]["phases"]["pooled"]
        assert (pooled["verdict"], pooled["order"], pooled["consolidation_end_step"]) == (
            want["verdict"], want["order"], want["consolidation_end_step"]), cell
        assert pooled["confidence"] == pytest.approx(want["confidence"], abs=1e-12)
    from dataclasses import replace

    from hicra.errors import InputError
    from hicra.study.statistics import summarize

    with pytest.raises(InputError, match="phase verdict rules v2, but preset 'controls' reads its runs by v3") as err:
        summarize(root / "runs", replace(PRESETS["controls"], phase_version=3), ["grpo"], 3)
    assert "ws0-seed00.json" in str(err.value) and "phases.version" in str(err.value)


def test_a_part_may_run_some_of_the_studys_cells(tmp_path):
    """A study run in parts of whole (cell, warm-start seed) groups: a summary folder made for the whole study
    accepts a part that runs some of its cells (`--cells`, knobs unchanged), and refuses a cell it does not hold, a
    cell with other knobs, other settings, and the whole study in a folder a part made."""
    from dataclasses import replace

    from hicra.errors import InputError
    from hicra.study.runner import check_study_dir

    whole = PRESETS["controls2"]
    check_study_dir(tmp_path / "all", whole)
    some = {k: v for k, v in whole.cells.items() if v["execution_noise"] > 0 and v["strategy_prior"] == "oracle"}
    assert len(some) == 2
    check_study_dir(tmp_path / "all", replace(whole, cells=some))
    for bad in (replace(whole, cells={"elsewhere": {"execution_noise": 0.2}}),
                replace(whole, cells={k: {**v, "execution_noise": 0.05} for k, v in some.items()}),
                replace(whole, cells=some, rl={**whole.rl, "steps": 80}),
                PRESETS["controls"]):
        with pytest.raises(InputError, match="other settings"):
            check_study_dir(tmp_path / "all", bad)
    check_study_dir(tmp_path / "part", replace(whole, cells=some))
    with pytest.raises(InputError, match="other settings"):
        check_study_dir(tmp_path / "part", whole)


def test_entropy_shape_benchmark_reads_tenths_net_change_and_the_test(tmp_path, capsys, benchmark_script):
    """benchmarks/entropy_shape.py: the tenths are `hicra.stats.block_means` of the curve (tested in test_stats), the
    net change is the last tenth minus the first, and the per-cell line counts the runs the verdict's test detects and those with a net
    rise, on two planted runs (a rise that is over in the first tenth, which a straight line barely sees, and a
    fall). A summary without the entropy curve gives one line naming its file and field, exit 2."""
    mod = benchmark_script("entropy_shape")
    rise = [1.0 + 0.2 * min(t, 10) / 10 for t in range(100)]
    fall = [1.0 - 0.001 * t for t in range(100)]
    cell = tmp_path / "c" / "cellA" / "grpo"
    cell.mkdir(parents=True)
    # (curve, detected, slope): detections 1 and net rises 2, so swapping the two counts would fail
    planted = [(rise, False, -0.0001), (fall, False, None), (rise, True, 0.0002)]
    for seed, (curve, detected, slope) in enumerate(planted):
        summary = {"format": RUN_FORMAT, "cell": "cellA", "warm_start_seed": 0, "seed": seed,
                   "train_curve": {"step": list(range(100))}, "metrics": {"strategy_entropy": curve},
                   "phases": {"exploration": {"detected": detected, "slope": slope, "tested": slope is not None},
                              "evidence": {"exploration": None if slope is None else {"window": [0.0, 99.0]}}}}
        (cell / f"ws0-seed{seed:02d}.json").write_text(json.dumps(summary))
    assert mod.main([str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    net_rise = np.mean(rise[90:]) - np.mean(rise[:10])
    assert f"net {net_rise:+.3f}" in out and f"net {np.mean(fall[90:]) - np.mean(fall[:10]):+.3f}" in out
    assert "seed 0: " in out and "detected False, slope -0.000100/step on steps [0.0, 99.0]" in out
    assert "detected False, slope n/a (not tested)" in out and "detected True, slope +0.000200/step" in out
    assert "cellA: 3 runs, test detects 1, net rise in 2" in out
    short = json.loads((cell / "ws0-seed00.json").read_text())
    short["metrics"]["strategy_entropy"] = rise[:7]
    (cell / "ws0-seed00.json").write_text(json.dumps(short))
    assert mod.main([str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ws0-seed00.json" in err[0] and "7 steps" in err[0]
    (cell / "ws0-seed00.json").unlink()
    bad = json.loads((cell / "ws0-seed01.json").read_text())
    del bad["metrics"]["strategy_entropy"]
    (cell / "ws0-seed01.json").write_text(json.dumps(bad))
    assert mod.main([str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ws0-seed01.json" in err[0] and "metrics.strategy_entropy" in err[0]


def test_same_training_benchmark_finds_each_differing_field(tmp_path, capsys, benchmark_script):
    """benchmarks/same_training.py: two planted roots share two runs, one equal in every training field but one
    metric curve (allowed with --except) and one whose probe differs by 0.25; the first trains identically only
    when its metric is allowed, the second never, and the runs under one root are counted. NaN equals NaN, a setup
    field (config) counts. No shared run, or an --except metric no run has: exit 2."""
    mod = benchmark_script("same_training")
    base = {"format": RUN_FORMAT, "cell": "cellA", "warm_start_seed": 0, "seed": 0,
            "eval": {"final": {"accuracy": 0.5}}, "eval_curve": {"step": [0, 20], "accuracy": [0.4, 0.5]},
            "train_curve": {"step": [0, 1], "accuracy": [0.3, 0.6]}, "probes": {"step": [0], "plan": [0.5]},
            "metrics": {"rel_ppl_reference": [1.0, 0.9], "rel_ppl_planning": [1.0, 1.1]},
            "phases": {"verdict": "none", "order": "none", "exploration": {"detected": False}}}
    for root in ("a", "b"):
        (tmp_path / root / "cellA" / "grpo").mkdir(parents=True)
    def put(root, name, summary):
        (tmp_path / root / "cellA" / "grpo" / name).write_text(json.dumps(summary))
    put("a", "ws0-seed00.json", base)
    put("b", "ws0-seed00.json", {**base, "metrics": {**base["metrics"], "rel_ppl_reference": [1.0, 0.8]},
                                 "phases": {**base["phases"], "verdict": "no-order"}})
    put("a", "ws0-seed01.json", base)
    put("b", "ws0-seed01.json", {**base, "probes": {"step": [0], "plan": [0.75]}})
    put("a", "ws1-seed00.json", base)
    assert mod.max_abs_diff({"x": [1.0, 2.0]}, {"x": [1.0, 2.5]}) == pytest.approx(0.5)
    assert mod.max_abs_diff([1.0], [1.0, 2.0]) is None
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert mod.main([a, b]) == 0
    out = capsys.readouterr().out
    assert "2 runs in both; 0 train identically" in out and "1 have the same verdict" in out
    assert "only under " + a + ": 1, only under " + b + ": 0" in out
    assert "metrics.rel_ppl_reference (max |diff| 0.1)" in out and "probes (max |diff| 0.25)" in out
    assert mod.main([a, b, "--except", "rel_ppl_reference"]) == 0
    out = capsys.readouterr().out
    assert "2 runs in both; 1 train identically" in out
    assert "ws0-seed00.json: trains identically" in out and "ws0-seed01.json: DIFFERS" in out
    put("a", "ws0-seed01.json", {**base, "probes": {"step": [0], "plan": [float("nan")]}})
    put("b", "ws0-seed01.json", {**base, "probes": {"step": [0], "plan": [float("nan")]}, "config": {"lr": 2.0}})
    assert mod.main([a, b, "--except", "rel_ppl_reference"]) == 0
    out = capsys.readouterr().out  # NaN equals NaN; a different setup (config) is a difference
    assert "ws0-seed01.json: DIFFERS; differing fields: config (max |diff| n/a)" in out
    assert mod.main([a, b, "--except", "rel_ppl_referenc"]) == 2
    assert "no such metric" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    assert mod.main([a, str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run summary" in err[0]
    for root in ("d", "e"):  # a study without cells (e.g. main): ARM/wsW-seedS.json
        (tmp_path / root / "grpo").mkdir(parents=True)
        (tmp_path / root / "grpo" / "ws3-seed3000.json").write_text(json.dumps({**base, "cell": ""}))
    assert mod.main([str(tmp_path / "d"), str(tmp_path / "e")]) == 0
    assert "1 runs in both; 1 train identically" in capsys.readouterr().out


def test_exploration_shapes_benchmark_plants_shapes_and_tests_them(tmp_path, capsys, benchmark_script):
    """benchmarks/exploration_shapes.py: the planted shapes start at 0 and end where the docstring says; the block
    profile joins block means by lines through their centres; the candidate net-change test's interval has the
    width of the net change's spread under white noise (1.96 x sqrt(2 / k) x SD, k steps per block), contains the
    estimate, stays silent on flat curves and detects a clear early rise but not a fall; `main` on planted
    summaries prints one row per shape and amplitude and two per blind-diverse cell. No blind-diverse summary, or a
    curve of the wrong length: one line, exit 2."""
    mod = benchmark_script("exploration_shapes")
    n = mod.STEPS
    for name in mod.SHAPES:
        assert mod.shape(name, 0.3)[0] == pytest.approx(0.0)
    assert mod.shape("linear", 0.3)[-1] == pytest.approx(0.3) and mod.shape("fall", 0.3)[-1] == pytest.approx(-0.3)
    assert mod.shape("early", 0.3)[mod.RISE_STEPS:] == pytest.approx(np.full(n - mod.RISE_STEPS, 0.3))
    assert mod.shape("ease", 0.3)[-1] == pytest.approx(0.2) and mod.shape("ease", 0.3).max() == pytest.approx(0.3)
    stepped = np.where(np.arange(n) < 100, 1.0, 1.5)
    profile = mod.block_profile([stepped, stepped + 0.2], 10)
    centres = [b.mean() for b in np.array_split(np.arange(n, dtype=float), 10)]
    means = [b.mean() for b in np.array_split(stepped, 10)]
    assert profile[0] == pytest.approx(0.0) and profile[-1] == pytest.approx(0.5)
    assert profile[int(centres[3])] == pytest.approx(np.interp(int(centres[3]), centres, means) - means[0])
    assert 0.0 < profile[100] < 0.5  # the step falls inside the fourth block: its mean is between the levels
    x = np.arange(n, dtype=float)
    sd = 0.1
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(0, sd, n)
        flat = mod.net_change_test(x, 1.0 + noise, 5)
        lo, hi = flat["interval"]
        assert not flat["detected"] and lo < flat["net_change"] < hi
        assert flat["net_change"] == pytest.approx(noise[-64:].mean() - noise[:64].mean())
        assert hi - lo == pytest.approx(2 * 1.96 * sd * np.sqrt(2 / 64), rel=0.3)
    noise = np.random.default_rng(0).normal(0, 0.05, n)
    rise = mod.net_change_test(x, 1.0 + mod.shape("early", 0.3) + noise, 5)
    assert rise["detected"] and rise["interval"][0] > 0
    assert not mod.net_change_test(x, 1.0 + mod.shape("fall", 0.3) + noise, 10)["detected"]
    cell = tmp_path / "r" / "exec0.0_prior-blind-common_opt-diverse" / "grpo"
    cell.mkdir(parents=True)
    for seed in range(2):
        curve = (1.0 + mod.shape("early", 0.2) + np.random.default_rng(seed).normal(0, 0.1, n)).tolist()
        (cell / f"ws0-seed{seed:02d}.json").write_text(json.dumps(
            {"format": RUN_FORMAT, "train_curve": {"step": list(range(n))},
             "metrics": {"step": list(range(n)), "strategy_entropy": curve}}))
    assert mod.main(["--n", "2", "--amplitudes", "0.1", "--noise-root", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "noise from 2 runs' noise models" in out
    rows = [line.split()[0] for line in out.splitlines()[2:]
            if line.split() and line.split()[0] in (*mod.SHAPES, "profile", "per-run")
            and not line.startswith("profile of")]
    assert rows == ["flat", "fall", "linear", "early", "ease", "profile", "per-run"]
    assert "profile of exec0.0_prior-blind-common_opt-diverse (2 runs)" in out
    assert mod.main(["--runs", str(tmp_path / "r")]) == 0  # the tests on the (planted) runs themselves
    curves = [np.array(json.loads(p.read_text())["metrics"]["strategy_entropy"]) for p in sorted(cell.iterdir())]
    expected = [sum(mod.trend_test(x, y)["detected"] for y in curves),
                sum(mod.net_change_test(x, y, 5)["detected"] for y in curves),
                sum(mod.net_change_test(x, y, 10)["detected"] for y in curves)]
    assert (f"exec0.0_prior-blind-common_opt-diverse: 2 runs, linear {expected[0]}, net5 {expected[1]}, "
            f"net10 {expected[2]}") in capsys.readouterr().out
    short = json.loads((cell / "ws0-seed01.json").read_text())
    short["metrics"] = {"step": list(range(10)), "strategy_entropy": [1.0] * 10}
    (cell / "ws0-seed01.json").write_text(json.dumps(short))
    assert mod.main(["--n", "2", "--noise-root", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ws0-seed01.json" in err[0] and "10 steps" in err[0]
    assert mod.main(["--noise-root", str(tmp_path)]) == 2
    assert "no blind-diverse run summaries" in capsys.readouterr().err


def test_summary_keeps_the_strategy_change_not_the_counts(smoke, tmp_path):
    """A run whose eval.json has `RLConfig.strategy_k`'s records: its summary keeps `strategy_change` as written
    and leaves out the per-problem counts; a run without them has no such key."""
    import shutil

    from hicra.study.runner import summarize_run

    out, _ = smoke
    run = tmp_path / "run"
    shutil.copytree(run_dir_for(out, "grpo", 0, 0), run)
    assert "strategy_change" not in summarize_run(run)["eval"]
    ev = json.loads((run / "eval.json").read_text())
    record = {"k": 2, "problem_ids": ["series:1:1:2"], "labels": ["one-by-one"], "counts": [[2.0]],
              "unparsed": [0.0]}
    change = {"Hfam_change": 0.25, "Hfam_interval": [0.125, 0.375], "reading": "rise"}
    (run / "eval.json").write_text(json.dumps({**ev, "warm_start_strategies": record, "final_strategies": record,
                                               "strategy_change": change}))
    got = summarize_run(run)["eval"]
    assert got["strategy_change"] == change
    assert not {"warm_start_strategies", "final_strategies"} & set(got)
    assert got["final"] == summarize_run(run_dir_for(out, "grpo", 0, 0))["eval"]["final"]



def test_a_run_entry_carries_the_strategy_change_brief(smoke, tmp_path):
    """`summarize`: a summary with `strategy_change` (eval.json's, `RLConfig.strategy_k`) gives its run entry the
    brief that "heldout-strategy-rise" reads; a summary without it gives none."""
    import shutil

    src, _ = smoke
    root = tmp_path / "runs"
    shutil.copytree(src / "summaries", root)
    path = root / "grpo" / "ws1-seed1000.json"
    summary = json.loads(path.read_text())
    change = {"Hfam_before": 0.5, "Hfam_after": 0.75, "Hfam_change": 0.25, "Hfam_interval": [0.125, 0.375],
              "reading": "rise", "n_complete": 3, "Hfam_complete_change": 0.25, "Hfam_complete_interval": [0.1, 0.4],
              "H_change": 0.3}
    summary["eval"]["strategy_change"] = change
    path.write_text(json.dumps(summary))
    runs = summarize(root, PRESETS["smoke"], ["grpo", "hicra"], 1, 2)["runs"]
    with_change = [r for r in runs if "strategy_change" in r]
    assert [(r["arm"], r["warm_start_seed"], r["seed"]) for r in with_change] == [("grpo", 1, 1000)]
    assert with_change[0]["strategy_change"] == {k: v for k, v in change.items() if k != "H_change"}


def test_a_later_study_takes_fresh_warm_start_seeds(tmp_path):
    """`StudyPreset.first_warm_start_seed`: the pairs start there (RL seeds follow their warm start), the planned
    run directories name them, and --only-warm-starts must name one of them."""
    from dataclasses import replace

    from hicra.study.presets import Pair, study_pairs
    from hicra.study.runner import plan_runs

    assert study_pairs(2, 2, first=2) == [Pair(2, 2000), Pair(2, 2001), Pair(3, 3000), Pair(3, 3001)]
    assert study_pairs(2, 2) == [Pair(0, 0), Pair(0, 1), Pair(1, 1000), Pair(1, 1001)]
    later = replace(PRESETS["smoke"], first_warm_start_seed=2)
    specs = plan_runs(tmp_path / "out", tmp_path / "sums", later, ["grpo"], 1, 2)
    assert sorted(Path(s.run_dir).name for s in specs) == ["ws2-seed2000", "ws3-seed3000"]
    with pytest.raises(InputError, match=r"among 2\.\.3"):
        run_study(tmp_path / "out", later, seeds=1, warm_start_seeds=2, only_warm_starts=[0], progress=False,
                  log=_quiet)


def test_planning_movers_benchmark_block_means_pooled_table_and_errors(tmp_path, capsys, benchmark_script):
    """benchmarks/planning_movers.py: each metric's block means are numpy's means over equal consecutive blocks of
    the steps (rows read in step order, whatever the file's order), the pooled line is the mean over the runs with
    its min and max, --json writes the same table; a run without one of the columns, or without metrics.parquet,
    gives one line naming the file and field, exit 2."""
    import pandas as pd

    mod = benchmark_script("planning_movers")
    runs = []
    for k, slope in enumerate((-0.01, -0.03)):
        run = tmp_path / f"run{k}"
        run.mkdir()
        steps = np.arange(8)
        frame = {"step": steps[::-1]}  # reversed on disk: the script must sort by step
        for j, c in enumerate(mod.METRICS):
            frame[c] = (1.0 + j + slope * steps)[::-1]
        pd.DataFrame(frame).to_parquet(run / "metrics.parquet")
        runs.append(run)
    out_json = tmp_path / "t.json"
    assert mod.main([*map(str, runs), "--blocks", "2", "--json", str(out_json)]) == 0
    table = json.loads(out_json.read_text())
    first = table["runs"][str(runs[0])]["rel_ppl_planning"]
    assert first == pytest.approx([1.0 - 0.01 * 1.5, 1.0 - 0.01 * 5.5])
    pooled = table["pooled"]["strategy_information"]
    late = [3.0 - 0.01 * 5.5, 3.0 - 0.03 * 5.5]
    assert pooled["mean"][1] == pytest.approx(np.mean(late))
    assert (pooled["min"][1], pooled["max"][1]) == pytest.approx((min(late), max(late)))
    assert f"{np.mean(late):.3f} [{min(late):.3f}-{max(late):.3f}]" in capsys.readouterr().out
    pd.DataFrame({"step": [0, 1], "rel_ppl_planning": [1.0, 0.9]}).to_parquet(runs[1] / "metrics.parquet")
    assert mod.main([str(runs[1])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.parquet" in err[0] and "field strategy_entropy" in err[0]
    assert mod.main([str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


def test_run_digest_reads_lab_runs_and_study_summaries_alike(tmp_path, capsys, benchmark_script):
    """benchmarks/run_digest.py: a `hicra lab` run directory (summary.json + eval.json) and a study run summary
    carrying the same phase verdict and evaluation give the same digest; each class gets its own tau and share of
    draws, the held-out strategy change is copied when recorded; a file that is not a run summary, a missing run
    or a run without a greedy accuracy gives one line naming the file and field, exit 2."""
    mod = benchmark_script("run_digest")
    order = {"order": "execution-first", "consolidates": {"execution": True, "planning": False, "reference": True},
             "consolidates_in_draws": {"execution": 0.97, "planning": 0.02, "reference": 0.88},
             "tau_exec": 41.0, "tau_plan": None, "tau_ref": 77.0}
    phases = {"version": 3, "verdict": "consolidation-only", "order": "execution-first",
              "evidence": {"order": order}}
    change = {"Hfam_change": 0.05, "Hfam_interval": [-0.01, 0.11], "reading": "-", "n_complete": 201,
              "Hfam_complete_change": 0.12, "Hfam_complete_interval": [0.04, 0.2]}
    evals = {"warm_start": {"accuracy": 0.484}, "final": {"accuracy": 0.633}, "strategy_change": change}
    run = tmp_path / "lab-run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"phases": phases}))
    (run / "eval.json").write_text(json.dumps(evals))
    study = tmp_path / "ws2-seed2000.json"
    study.write_text(json.dumps({"format": "hicra-study-run/1", "phases": phases, "eval": evals, "seconds": 701.9}))
    out = tmp_path / "d.json"
    assert mod.main([str(run), str(study), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    a, b = got[str(run)], got[str(study)]
    assert {k: v for k, v in a.items() if k not in ("source", "seconds")} == {
        k: v for k, v in b.items() if k not in ("source", "seconds")}
    assert (a["seconds"], b["seconds"]) == (None, 701.9)  # only a study summary records the run's wall time
    assert a["classes"] == {"execution": {"consolidates": True, "tau": 41.0, "share_of_draws": 0.97},
                            "planning": {"consolidates": False, "tau": None, "share_of_draws": 0.02},
                            "reference": {"consolidates": True, "tau": 77.0, "share_of_draws": 0.88}}
    assert a["greedy_accuracy"] == {"warm_start": 0.484, "final": 0.633}
    assert a["heldout_strategies"]["Hfam_complete_interval"] == [0.04, 0.2]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and "greedy 48.4% -> 63.3%" in printed[0]
    assert "refe yes tau 77 draws 0.88" in printed[1] and "H|fam complete +0.120 [+0.040, +0.200] (201" in printed[1]
    assert printed[1].endswith("; 702 s") and " s" not in printed[0].rsplit(";", 1)[-1]
    assert "(201 problems, rise)" in printed[1]  # hicra.stats.interval_reading of [0.04, 0.2]
    # with two study runs or more, a closing line over their wall times (range, median, within --budget)
    for name, secs in (("ws0-seed00.json", 240.0), ("ws0-seed01.json", 250.0)):
        (tmp_path / name).write_text(json.dumps({"format": "hicra-study-run/1", "phases": phases, "eval": evals,
                                                 "seconds": secs}))
    assert mod.main([str(study), str(tmp_path / "ws0-seed00.json"), str(tmp_path / "ws0-seed01.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "wall time of 3 study runs: 240-702 s, median 250 s; 1 within 240 s")
    change["Hfam_complete_interval"] = [0.0, 0.2]  # an end at exactly 0 is not a rise
    study.write_text(json.dumps({"format": "hicra-study-run/1", "phases": phases, "eval": evals}))
    assert mod.main([str(study)]) == 0
    assert "[+0.000, +0.200] (201 problems, -)" in capsys.readouterr().out
    (tmp_path / "study.json").write_text(json.dumps({"format": "hicra-study/2"}))
    for bad, words in ((tmp_path / "study.json", "field 'format'"), (tmp_path / "nowhere", "no file")):
        assert mod.main([str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and str(bad) in err[0]
    (run / "eval.json").write_text(json.dumps({"warm_start": {"accuracy": 0.5}, "final": {}}))
    assert mod.main([str(run)]) == 2
    assert "field 'eval.final.accuracy'" in capsys.readouterr().err


def test_run_digest_prints_a_cached_warm_starts_build_time(tmp_path, capsys, benchmark_script):
    """benchmarks/run_digest.py on a cached warm start (a directory with warm_start.json, as `hicra study --cache`
    keeps it) prints its key, seed, corpus knobs and build seconds, which no study summary carries; a record
    without `seconds` gives one line naming the file and field, exit 2."""
    mod = benchmark_script("run_digest")
    ws = tmp_path / "warmstart-abc"
    ws.mkdir()
    config = {"seed": 3, "execution_noise": 0.1, "strategy_prior": "blind-common", "optimum": "single-route",
              "slip_cap": 1, "epochs": 14}
    record = {"key": "abc", "config": config, "seconds": 2612.6, "threads": 1}
    (ws / "warm_start.json").write_text(json.dumps(record))
    out = tmp_path / "d.json"
    assert mod.main([str(ws), "--json", str(out)]) == 0
    got = json.loads(out.read_text())[str(ws)]
    assert (got["warm_start_key"], got["seed"], got["build_seconds"]) == ("abc", 3, 2612.6)
    assert got["knobs"] == {"execution_noise": 0.1, "strategy_prior": "blind-common", "planning_noise": None,
                            "favourite_share": None, "slip_cap": 1, "optimum": "single-route"}
    printed = capsys.readouterr().out.strip()
    assert printed.endswith("built in 2613 s on 1 thread(s)") and "(seed 3; execution_noise 0.1," in printed
    del record["seconds"]
    (ws / "warm_start.json").write_text(json.dumps(record))
    assert mod.main([str(ws)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'seconds'" in err[0] and "warm_start.json" in err[0]


def test_bootstrap_spread_reproduces_the_recorded_interval_and_counts_readings_over_seeds(tmp_path, capsys,
                                                                                          benchmark_script):
    """benchmarks/bootstrap_spread.py: from a run's recorded held-out strategies it reproduces eval.json's
    complete-problem interval at the run's own RL seed (and says NO when the record was computed otherwise); a
    clear rise reads `rise` at every bootstrap seed, an unchanged policy `-` at every seed; a run without a record
    or without run.json: one line naming the file and field, exit 2."""
    from hicra.lab.probes import heldout_strategy_change

    mod = benchmark_script("bootstrap_spread")
    ids = [f"series:{i}" for i in range(20)] + [f"countdown:{i}" for i in range(20)]
    labels = ["a", "b", "c"]
    narrow = {"k": 8, "problem_ids": ids, "labels": labels, "counts": [[8, 0, 0]] * 40, "unparsed": [0] * 40}
    wide = dict(narrow, counts=[[4, 2, 2] if i % 4 else [8, 0, 0] for i in range(40)])

    def make(name, before, after, seed, recorded_seed):
        run = tmp_path / name
        run.mkdir()
        change = heldout_strategy_change(before, after, seed=recorded_seed)
        (run / "eval.json").write_text(json.dumps({"warm_start_strategies": before, "final_strategies": after,
                                                   "strategy_change": change}))
        (run / "run.json").write_text(json.dumps({"seed": seed}))
        return run

    rise, flat = make("rise", narrow, wide, 7, 7), make("flat", narrow, narrow, 7, 7)
    other = make("other", narrow, dict(wide, counts=[[4, 2, 2] if i % 9 == 0 else [8, 0, 0] for i in range(40)]),
                 7, 8)
    out = tmp_path / "s.json"
    assert mod.main([str(rise), str(flat), str(other), "--seeds", "5", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got[str(rise)]["reproduced"] and got[str(flat)]["reproduced"]
    assert got[str(rise)]["share"] == {"rise": 1.0, "-": 0.0, "fall": 0.0} and got[str(rise)]["low_min"] > 0
    assert got[str(flat)]["share"] == {"rise": 0.0, "-": 1.0, "fall": 0.0}  # [0, 0]: an end at 0 is no rise
    assert not got[str(other)]["reproduced"]  # recorded at bootstrap seed 8, the run's seed is 7
    assert sum(got[str(other)]["share"].values()) == pytest.approx(1.0)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and "(reproduced: yes)" in printed[0] and "(reproduced: NO)" in printed[2]
    assert "rise 1.00, - 0.00, fall 0.00" in printed[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "eval.json").write_text(json.dumps({"warm_start_strategies": narrow}))
    (bad / "run.json").write_text(json.dumps({"seed": 1}))
    assert mod.main([str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'final_strategies'" in err[0] and "eval.json" in err[0]
    for after, field in ((dict(narrow, counts=[[8, 0]] * 40), "final_strategies.counts"),
                         ({k: v for k, v in narrow.items() if k != "unparsed"}, "final_strategies.unparsed"),
                         (dict(narrow, problem_ids=ids[::-1]), "final_strategies.problem_ids"),
                         (dict(narrow, unparsed=[1] * 39 + [0]), "final_strategies.unparsed")):
        (bad / "eval.json").write_text(json.dumps({"warm_start_strategies": narrow, "final_strategies": after}))
        assert mod.main([str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"field '{field}'" in err[0], (field, err)
    (bad / "eval.json").write_text(json.dumps({"warm_start_strategies": narrow, "final_strategies": wide}))
    assert mod.main([str(bad), "--seeds", "2"]) == 0  # no recorded interval: nothing to reproduce
    assert "(reproduced: n/a)" in capsys.readouterr().out
    (bad / "run.json").unlink()
    assert mod.main([str(bad)]) == 2
    assert "run.json" in capsys.readouterr().err


def test_a_main_study_is_headed_by_the_outcome_of_its_controls(smoke, tmp_path, capsys):
    """`hicra study --controls FILE` (docs/study.md, point 1 and D5): the committed `controls2` results (3 of 6
    criteria passed, docs/study.md, "`controls2` outcome") head results.md with the count and the failed
    criteria's names, and go into results.json; without --controls the head says no controls are linked; a
    results.json without control checks (the smoke study's own) is refused before any run: one line, exit 2."""
    from hicra.cli import VERB_MODULES

    out, _ = smoke
    c2 = Path(__file__).resolve().parents[1] / "docs/findings/v2/controls2/results.json"
    got = study.controls_outcome(c2)
    assert (got["preset"], got["n_passed"], got["n_criteria"], got["all_passed"]) == ("controls2", 3, 6, False)
    assert got["failed"] == ["exploration-where-possible", "planning-first-none-execution-blind-plan-diverse",
                             "planning-first-none-execution-blind-plan-single-route"] and got["not_tested"] == []
    res = run_study(tmp_path / "main", "smoke", seeds=1, warm_start_seeds=2, workers=1, progress=False, log=_quiet,
                    summary_root=out / "summaries", controls=c2)
    assert res["controls_study"] == got
    assert json.loads((tmp_path / "main" / "results.json").read_text())["controls_study"]["n_passed"] == 3
    md = (tmp_path / "main" / "results.md").read_text()
    assert "3 of 6 criteria passed (failed: exploration-where-possible, planning-first-none" in md
    assert "no verdict below counts" in md.split("| arm |")[0]  # above the first table
    assert "Controls: none linked" in (out / "results.md").read_text()
    with pytest.raises(InputError, match="no control checks"):
        study.controls_outcome(out / "results.json")
    if "hicra.study.cli" in VERB_MODULES:
        before = _snapshot(out, "summaries")
        code, err = _cli(["study", "--preset", "smoke", "--seeds", "1", "--warm-start-seeds", "2", "--out",
                          str(tmp_path / "again"), "--summaries", str(out / "summaries"), "--controls",
                          str(out / "results.json")], capsys)
        assert code == 2 and "field 'controls.criteria'" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "again" / "results.md").exists() and _snapshot(out, "summaries") == before


def _answers_input(hg: tuple, hp: tuple, verdict: str = "two-phase", first: int = 12, n: int = 16,
                   controls: dict | None = None) -> dict:
    """A minimal finished main study for `preregistered_answers`: HICRA - GRPO and HICRA - placebo on auc_eval as
    (diff, Holm p), GRPO's pooled verdict and its execution-first run count."""
    def comp(a, b, diff, p):
        return {"a": a, "b": b, "endpoint": "auc_eval", "diff": diff, "low": diff - 0.02, "high": diff + 0.02,
                "p_holm": p, "mdd_80": 0.03, "mdd_80_nested": 0.04}
    phases = {"pooled": {"verdict": verdict, "order": "execution-first"},
              "order_counts": {"execution-first": first, "none": n - first}}
    per_arm = {a: {"n_runs": n, "phases": phases} for a in ("grpo", "hicra", "placebo", "gated")}
    return {"cells": {}, "per_arm": per_arm,
            "comparisons": [comp("hicra", "grpo", *hg), comp("placebo", "grpo", 0.0, 1.0),
                            comp("gated", "grpo", -0.05, 0.01), comp("hicra", "placebo", *hp),
                            {**comp("hicra", "grpo", 0.5, 0.0), "endpoint": "final_accuracy"}],
            **({"controls_study": controls} if controls else {})}


def test_preregistered_answers_follow_the_registered_rules():
    """Points 1, 6 and 7 of the pre-registration, on hand-made results: which difference holds (Holm p < 0.05, on
    auc_eval only), the headline in each direction, the 12-of-16 order rule, and whether the answers count."""
    from hicra.study.statistics import preregistered_answers

    passed = {"preset": "c", "n_passed": 6, "n_criteria": 6, "all_passed": True}
    failed = {"preset": "c", "n_passed": 3, "n_criteria": 6, "all_passed": False}
    a = preregistered_answers(_answers_input((0.04, 0.01), (0.03, 0.04), controls=passed))
    assert a["headline"] == "HICRA beats GRPO, and not by the extra advantage mass alone" and a["counts"] is True
    assert a["primary"][0]["holds"] and a["primary"][1]["holds"]
    # the final-accuracy comparison (diff 0.5, p 0) is another endpoint's: it does not enter
    assert a["primary"][0]["diff"] == 0.04
    a = preregistered_answers(_answers_input((0.04, 0.01), (0.03, 0.05), controls=failed))
    assert a["headline"] == "HICRA beats GRPO, but not shown to beat the placebo" and a["counts"] is False
    assert a["primary"][1]["answer"] == "no difference detected"  # p = 0.05 is not below the level
    a = preregistered_answers(_answers_input((-0.04, 0.001), (-0.03, 0.01)))
    assert a["headline"] == "GRPO beats HICRA" and a["primary"][1]["answer"] == "placebo beats hicra"
    assert a["counts"] is False and a["controls"] is None  # no controls linked: nothing counts
    assert {r["a"]: r["answer"] for r in a["secondary"]} == {"placebo": "no difference detected",
                                                             "gated": "grpo beats gated"}
    r = _answers_input((0.02, 0.3), (0.0, 0.9))
    r["per_arm"]["phase-aware"] = r["per_arm"]["gated"]
    r["comparisons"].append({**r["comparisons"][1], "a": "phase-aware", "sd_diff": 0.0})  # diff 0 in every pair
    r["runs"] = [{"arm": "phase-aware", "phase_aware_switch_step": s} for s in (None, 40, None)]
    a = preregistered_answers(r)
    assert a["headline"] == "no difference detected between HICRA and GRPO"
    pa = next(x for x in a["secondary"] if x["a"] == "phase-aware")
    assert pa["answer"] == "identical in every pair (nothing to compare)" and a["phase_aware_switched"] == {
        "runs": 3, "switched": 1}
    assert "switched HICRA on in 1 of 3 runs" in "\n".join(study.report._answers_lines(a))
    assert a["phases"]["two_phase_order_appears"] and a["phases"]["needed"] == 12
    assert not preregistered_answers(_answers_input((0, 1), (0, 1), first=11))["phases"]["two_phase_order_appears"]
    assert not preregistered_answers(_answers_input((0, 1), (0, 1), verdict="consolidation-only", first=16))[
        "phases"]["two_phase_order_appears"]
    # a controls study (cells) and a study without the placebo get no answers
    assert preregistered_answers({**_answers_input((0, 1), (0, 1)), "cells": {"c": {}}}) is None
    r = _answers_input((0, 1), (0, 1))
    del r["per_arm"]["placebo"]
    assert preregistered_answers(r) is None
    md = study.report._answers_lines(preregistered_answers(_answers_input((0.04, 0.01), (0.03, 0.04),
                                                                          controls=failed)))
    text = "\n".join(md)
    assert "**they do not count** (point 1: the controls did not all pass)" in text
    assert "**hicra beats grpo**: +4.0 points [+2.0, +6.0], Holm p=0.010" in text


def test_study_recorded_before_a_config_field_existed_still_matches(tmp_path):
    """A config field added after a study was recorded (missing from its study.json) matches while today's value is
    the field's default, and is refused, naming the field, when set to anything else. The committed `controls` and
    `controls2` folders predate `RLConfig.strategy_k` and open at today's code."""
    from dataclasses import replace

    from hicra.errors import InputError
    from hicra.fileio import read_json, write_json
    from hicra.study.runner import check_study_dir

    smoke = PRESETS["smoke"]
    info = check_study_dir(tmp_path / "s", smoke)
    assert info["settings"]["rl"]["strategy_k"] == 0
    old = read_json(tmp_path / "s" / "study.json", "study file")
    del old["settings"]["rl"]["strategy_k"]
    write_json(tmp_path / "s" / "study.json", old)
    # strategy_k 0 = the behaviour before the field existed; the match says what it assumed
    assert check_study_dir(tmp_path / "s", smoke)["assumed_fields"] == {"rl.strategy_k": 0}
    assert "strategy_k" not in read_json(tmp_path / "s" / "study.json", "study file")["settings"]["rl"]
    with pytest.raises(InputError, match=r"rl\.strategy_k is absent in study.json, 4 today"):
        check_study_dir(tmp_path / "s", replace(smoke, rl={**smoke.rl, "strategy_k": 4}))
    # a field the study recorded still has to match, and the refusal names it, not the field it assumed
    with pytest.raises(InputError, match=r"first difference: settings\.rl\.temperature is 0\.7 in study.json"):
        check_study_dir(tmp_path / "s", replace(smoke, rl={**smoke.rl, "temperature": 0.9}))
    assert "assumed_fields" not in check_study_dir(tmp_path / "t", smoke)  # a study made today assumes nothing
    root = Path(__file__).resolve().parents[1] / "docs" / "findings" / "v2"
    for name, folder in (("controls", "runs"), ("controls2", "controls2/runs")):
        assert "strategy_k" not in read_json(root / folder / "study.json", "study file")["settings"]["rl"]
        assert check_study_dir(root / folder, PRESETS[name])["assumed_fields"] == {"rl.strategy_k": 0}
    for name, folder in (("controls3", "controls3/runs"), ("main", "main"), ("main-mass", "main")):
        assert "assumed_fields" not in check_study_dir(root / folder, PRESETS[name])


def test_paired_comparison_against_scipy_and_identical_pairs():
    """`paired_comparison` on the shared pairs: the mean and SD of the differences against numpy, the sign-flip p
    against scipy's exact permutation test (8 pairs: all 256 sign assignments), missing pairs left out; pairs that
    differ by exactly 0 everywhere are marked `identical`, and the comparisons table says so instead of printing a
    detectable difference of 0."""
    from hicra.study.report import _mdd_cell
    from hicra.study.statistics import paired_comparison

    rng = np.random.default_rng(3)
    keys = [(w, s) for w in range(2) for s in range(4)]
    a = {k: float(v) for k, v in zip(keys, rng.normal(0.5, 0.05, 8), strict=True)}
    b = {k: float(v) for k, v in zip(keys, rng.normal(0.48, 0.05, 8), strict=True)}
    a[(9, 9)], b[(8, 8)], b[(1, 3)] = 0.7, 0.1, None  # unshared or missing: left out
    c = paired_comparison(a, b)
    shared = [k for k in keys if k != (1, 3)]
    d = np.array([a[k] - b[k] for k in shared])
    assert c["n_pairs"] == 7 and c["n_warm_starts"] == 2 and not c["identical"]
    assert c["diff"] == pytest.approx(d.mean()) and c["sd_diff"] == pytest.approx(d.std(ddof=1))
    exact = sps.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                 alternative="two-sided").pvalue
    assert c["p_value"] == pytest.approx(exact, abs=1e-9)
    assert c["low"] < c["diff"] < c["high"]
    same = paired_comparison(a, dict(a))
    assert same["identical"] and same["diff"] == 0 and same["sd_diff"] == 0
    assert _mdd_cell(same) == "identical in every pair" and _mdd_cell(c).count(" / ") == 1


def test_hicra_is_compared_with_each_placebo_it_ran_beside(smoke, tmp_path):
    """With both placebo arms (count-matched `placebo`, mass-matched `placebo-mass`) beside GRPO and HICRA, each gets
    a HICRA - placebo comparison, filed under its own name (`vs_placebo`, `vs_placebo-mass`), with the paired
    difference of the planted final accuracies, and results.md prints both lines."""
    import shutil

    from hicra.study.presets import ARMS
    from hicra.study.report import results_markdown

    src, _ = smoke
    root = tmp_path / "summaries"
    shutil.copytree(src / "summaries", root)
    planted = {"placebo": (0.10, 0.30), "placebo-mass": (0.20, 0.05)}  # final accuracy of pairs (0, 0), (1, 1000)
    for arm, finals in planted.items():
        assert ARMS[arm]["algo"] == arm
        (root / arm).mkdir()
        for (ws, seed), acc in zip(PAIRS, finals, strict=True):
            name = f"ws{ws}-seed{seed:02d}.json"
            s = json.loads((root / "hicra" / name).read_text())
            s["arm"], s["config"]["algo"] = arm, arm
            s["eval"]["final"]["accuracy"] = acc
            (root / arm / name).write_text(json.dumps(s))
    arms = ["grpo", "hicra", "placebo", "placebo-mass"]
    res = summarize(root, PRESETS["smoke"], arms, 1, 2)
    hicra_final = [json.loads((root / "hicra" / f"ws{w}-seed{s:02d}.json").read_text())["eval"]["final"]["accuracy"]
                   for w, s in PAIRS]
    for arm, finals in planted.items():
        c = res["per_arm"]["hicra"][f"vs_{arm}"]["final_accuracy"]
        assert (c["a"], c["b"]) == ("hicra", arm)
        assert c["diff"] == pytest.approx(np.mean(np.array(hicra_final) - np.array(finals)))
    pairs = {(c["a"], c["b"]) for c in res["comparisons"]}
    assert pairs == {("hicra", "grpo"), ("placebo", "grpo"), ("placebo-mass", "grpo"), ("hicra", "placebo"),
                     ("hicra", "placebo-mass")}
    assert all(c["holm_family_size"] == 5 for c in res["comparisons"])
    md = results_markdown(res)
    assert "HICRA - placebo: " in md and "HICRA - mass-matched placebo: " in md
    assert "assumed" not in md and "Exploratory" not in md
    md = results_markdown({**res, "assumed_fields": {"rl.strategy_k": 0}, "banner": "Exploratory add-on."})
    assert "matched at the value that keeps the earlier behaviour: rl.strategy_k = 0." in md
    assert md.index("**Exploratory add-on.**") < md.index("| arm |")


def test_main_mass_add_on_shares_the_main_studys_settings_and_pairs():
    """The add-on preset `main-mass` has main's settings and pairs, so it can run in main's summary folder (GRPO's
    and HICRA's runs reused), and only its arms differ: the mass-matched placebo replaces the others."""
    from hicra.study.presets import study_pairs, study_settings

    main, add = PRESETS["main"], PRESETS["main-mass"]
    assert study_settings(add) == study_settings(main)
    assert study_pairs(add.warm_start_seeds, add.seeds, add.first_warm_start_seed) == study_pairs(
        main.warm_start_seeds, main.seeds, main.first_warm_start_seed)
    assert add.arms == ["grpo", "hicra", "placebo-mass"] and "placebo-mass" not in main.arms


def test_summaries_keep_the_share_of_tokens_each_arm_amplified(smoke):
    """Run summaries keep `amplified_ratio` (the share of tokens the arm's own mask amplified): HICRA's equals its
    planning-token share step by step, GRPO's is 0, and the mechanism table gains its column; results pooled from
    older summaries without it keep the old table."""
    from hicra.study.report import results_markdown

    out, res = smoke
    hicra = json.loads((out / "summaries" / "hicra" / "ws0-seed00.json").read_text())["train_curve"]
    assert hicra["amplified_ratio"] == pytest.approx(hicra["planning_ratio"])
    mech = {arm: res["per_arm"][arm]["mechanism"] for arm in ("grpo", "hicra")}
    assert mech["grpo"]["amplified_ratio"]["warm_start_mean"] == 0.0
    assert mech["hicra"]["amplified_ratio"]["warm_start_mean"] == pytest.approx(
        mech["hicra"]["planning_ratio"]["warm_start_mean"])
    assert "tokens amplified (own mask) |" in results_markdown(res)
    old = {**res, "per_arm": {a: {**v, "mechanism": {k: m for k, m in v["mechanism"].items() if k != "amplified_ratio"}}
                              for a, v in res["per_arm"].items()}}
    assert "tokens amplified" not in results_markdown(old)


def test_mass_match_benchmark_counts_shortfalls_against_alpha_times_the_planning_share(tmp_path, capsys,
                                                                                       benchmark_script):
    """benchmarks/mass_match.py on two planted placebo-mass summaries: the target is alpha x planning_update_share,
    a step counts as short only beyond the tolerance, null steps are skipped, the step-0 means with and without the
    run that is off there, and the largest shortfall with its step; a summary without the curves: exit 2."""
    mod = benchmark_script("mass_match")
    base = {"format": RUN_FORMAT, "cell": "", "warm_start_seed": 0, "seed": 0}
    good = {**base, "train_curve": {"step": [0, 1, 2], "update_change": [0.070, 0.080, None],
                                    "planning_update_share": [0.35, 0.40, None]}}
    bad = {**base, "seed": 1, "train_curve": {"step": [0, 1, 2], "update_change": [0.088, 0.1, 0.07],
                                              "planning_update_share": [0.56, 0.72, 0.36]}}
    paths = []
    for name, s in (("a.json", good), ("b.json", bad)):
        (tmp_path / name).write_text(json.dumps(s))
        paths.append(str(tmp_path / name))
    assert mod.main(paths) == 0
    out = capsys.readouterr().out
    assert "a.json: step-0 update change 7.00% (target 7.00%); short on 0 of 2 steps" in out
    assert "b.json: step-0 update change 8.80% (target 11.20%); short on 2 of 3 steps" in out
    assert "step 0, all runs: 7.90% vs target 9.10% (2 runs); runs within 0.2 points there: 7.00% vs target 7.00% (1 runs)" in out
    assert "steps short by more than 0.2 points: 2 of 5, in 1 of 2 runs; largest 4.4 points" in out
    assert "step 1, planning 72% of the update" in out
    (tmp_path / "c.json").write_text(json.dumps({**base, "train_curve": {"step": [0]}}))
    assert mod.main([str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_curve.update_change" in err[0]


@pytest.mark.parametrize(("damage", "field"), [
    (lambda s: s.pop("eval"), "eval"),
    (lambda s: s.update(seed=True), "seed"),
    (lambda s: s["train_curve"]["accuracy"].pop(), "train_curve"),
    (lambda s: s["eval_curve"].pop("step"), "eval_curve.step"),
    (lambda s: s["eval"]["final"].update(accuracy="0.5"), "eval.final.accuracy"),
    # values inside the fields, which failed deep in the statistics with a traceback (a reviewer's repros)
    (lambda s: s["eval_curve"]["accuracy"].__setitem__(3, None), "eval_curve.accuracy"),
    (lambda s: s["train_curve"]["accuracy"].__setitem__(0, "0.3"), "train_curve.accuracy"),
    (lambda s: s["phases"].pop("verdict"), "phases.verdict"),
    (lambda s: s.update(metrics={}), "metrics.step"),
    (lambda s: s["eval"]["final_sampled"].update(accuracy=None), "eval.final_sampled.accuracy"),
    # types inside phases, probes, metrics and the error shares, which had been copied into results.json, had
    # dropped the run out of the verdict counts, or were tracebacks (a reviewer's repros, session 55)
    (lambda s: s["phases"].update(verdict=[1]), "phases.verdict"),
    (lambda s: s["phases"].update(consolidation_end_step="x"), "phases.consolidation_end_step"),
    (lambda s: s["phases"].update(confidence=None), "phases.confidence"),
    (lambda s: s["eval"]["final"].update(errors_execution_share="x"), "eval.final.errors_execution_share"),
    (lambda s: s["probes"].update(plan_probe_solved=["x"] * len(s["probes"]["step"])), "probes.plan_probe_solved"),
    (lambda s: s["probes"]["step"].pop(), "probes"),
    (lambda s: s["metrics"].update(accuracy=["x"] * len(s["metrics"]["step"])), "metrics.accuracy"),
])
def test_a_damaged_run_summary_is_named_with_its_field(tmp_path, damage, field):
    """A committed summary loads; the same file with one field removed or of the wrong type raises InputError naming
    the file and that field (a one-line error and exit 2 from `hicra study`), not a KeyError deep in the statistics."""
    from hicra.study.statistics import load_summary

    source = Path(__file__).parents[1] / "docs" / "findings" / "v2" / "main" / "grpo" / "ws0-seed00.json"
    assert load_summary(source, complete=True)["log"]
    summary = json.loads(source.read_text())
    damage(summary)
    path = tmp_path / "ws0-seed00.json"
    path.write_text(json.dumps(summary))
    with pytest.raises(InputError, match=rf"ws0-seed00.json, field '{re.escape(field)}': "):
        load_summary(path, complete=True)
    if field == "train_curve":  # the training curve is checked also when only a few fields are read
        with pytest.raises(InputError, match="field 'train_curve': columns are not lists of one length"):
            load_summary(path)


def test_summaries_carry_the_response_weighted_execution_curve(smoke):
    """So a later reading can check a consolidation against the response-length mix (docs/dynamics.md)."""
    out, _ = smoke
    summary = json.loads(summary_path_for(out / "summaries", "grpo", 0, 0).read_text())
    rw, pooled = summary["metrics"]["rel_ppl_execution_rw"], summary["metrics"]["rel_ppl_execution"]
    assert len(rw) == len(pooled) == len(summary["metrics"]["step"]) and rw[0] == pytest.approx(1.0)


def test_a_summary_with_null_metric_and_probe_entries_loads(tmp_path):
    """The runner writes NaN as null (a step without planning tokens, a probe not scored): such summaries load. The
    session-55 type checks had refused them, so `hicra study --preset smoke` failed after all its runs (a
    reviewer's repro)."""
    from hicra.study.statistics import load_summary

    source = Path(__file__).parents[1] / "docs" / "findings" / "v2" / "main" / "grpo" / "ws0-seed00.json"
    summary = json.loads(source.read_text())
    summary["metrics"]["rel_ppl_planning"][0] = None
    summary["probes"]["plan_probe_solved"][0] = None
    path = tmp_path / "ws0-seed00.json"
    path.write_text(json.dumps(summary))
    assert load_summary(path, complete=True)["metrics"]["rel_ppl_planning"][0] is None


def test_study_help_names_every_arm(capsys):
    """`hicra study --help` lists every arm `--arms` accepts (it once left out placebo-mass)."""
    from hicra.cli import main
    from hicra.study.presets import ARMS

    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert [arm for arm in ARMS if arm not in text.split("Arms:")[1]] == []


@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s.update(seed=0), "seed"),
    (lambda s: s.update(arm="grpo"), "arm"),
    (lambda s: s["config"].update(algo="grpo", alpha=0.0), "config.algo"),
    (lambda s: s.update(warm_start_seed=2), "warm_start_seed"),
    # a run without a held-out curve would drop out of the primary comparison, its pair unnamed
    (lambda s: s.update(eval_curve={"step": [80], "accuracy": [0.4]}), "eval_curve"),
    # a run without probes had dropped its arm's whole probe_change section, with exit 0 (a reviewer's repro)
    (lambda s: s.update(probes={}), "probes"),
])
def test_a_summary_that_is_not_its_places_run_is_refused(tmp_path, capsys, change, field):
    """A summary copied or moved to another run's path was pooled and paired as that run (a GRPO run filed under
    hicra/ counted as HICRA). `hicra study` now names the file and the field that disagrees with its place."""
    import shutil

    from hicra.cli import main

    root = tmp_path / "main"
    shutil.copytree(Path(__file__).parents[1] / "docs" / "findings" / "v2" / "main", root,
                    ignore=shutil.ignore_patterns("placebo-mass"))
    path = root / "hicra" / "ws0-seed01.json"
    summary = json.loads(path.read_text())
    change(summary)
    path.write_text(json.dumps(summary))
    assert main(["study", "--preset", "main", "--summaries", str(root), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"hicra study: error: {path}, field '{field}': ")
    assert "(hicra, ws0-seed01)" in err or "15 other runs of hicra do" in err


def test_study_workers_end_with_the_study_process():
    """A worker whose study process was SIGKILLed had gone on writing beside a rerun, then waited forever (a
    reviewer's repro); the worker initialiser now asks Linux for SIGTERM when the parent dies."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    code = ("import ctypes; from hicra.study import runner; runner.{}(); v = ctypes.c_int(); "
            "ctypes.CDLL(None).prctl(2, ctypes.byref(v)); print(v.value)")  # 2 = PR_GET_PDEATHSIG
    for init, signal in (("_pool_worker_init", "15"), ("_worker_init", "0")):
        # the study process itself (which runs _worker_init for its in-process runs) must outlive its shell (nohup)
        out = subprocess.run([sys.executable, "-c", code.format(init)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == signal, init


def test_summarize_takes_a_preset_by_name(smoke):
    out, _ = smoke
    by_name = summarize(out / "summaries", "smoke", ["grpo", "hicra"], 1, 2)
    assert by_name == summarize(out / "summaries", PRESETS["smoke"], ["grpo", "hicra"], 1, 2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"preset": "nope"}, "field 'preset': unknown study preset 'nope'; known: smoke, quick"),
    ({"arms": ["bogus"]}, r"field 'arms': unknown arm\(s\) \['bogus'\]; known: grpo"),
    ({"arms": []}, r"field 'arms': unknown arm\(s\) \[\]"),
    ({"arms": ["grpo", "grpo"]}, "an arm is listed twice"),
])
def test_run_study_refuses_unknown_presets_and_arms_before_writing(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        run_study(tmp_path / "s", **{"preset": "smoke", **kwargs}, progress=False, log=_quiet)
    with pytest.raises(InputError, match=message):
        summarize(tmp_path, kwargs.get("preset", "smoke"), kwargs.get("arms", ["grpo"]), 1)
    assert not (tmp_path / "s").exists()
