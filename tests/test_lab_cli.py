"""`hicra lab` end to end on a tiny preset: warm start (then reused from the cache), RL, analysis, errors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from hicra.cli import main
from hicra.lab import presets
from hicra.lab.rl import RLConfig
from hicra.lab.sft import WarmStartConfig

TASKS = [{"family": "series", "max_start": 9, "max_step": 2, "counts": [2, 3]}]


@pytest.fixture
def tiny_preset(monkeypatch):
    ws = WarmStartConfig(tasks=TASKS, n_train=200, vocab_size=280, size="1m", epochs=1, batch_size=16, seed=0,
                         heldout_share=0.3, max_response_tokens=48)
    rl = RLConfig(tasks=TASKS, steps=2, prompts_per_step=2, group_size=2, max_new_tokens=16, n_eval=4, n_probe=2,
                  eval_every=1, heldout_share=0.3, checkpoint_every=1)
    monkeypatch.setitem(presets.PRESETS, "quick", (ws, rl))
    return ws


def test_lab_end_to_end_and_cache_reuse(tiny_preset, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["lab", "--algo", "grpo", "--seed", "3", "--cache", str(cache), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "r1")]) == 0
    out1 = capsys.readouterr().out
    assert f"run directory: {tmp_path / 'r1'}" in out1 and "warm start" in out1
    assert "held-out problems (greedy)" in out1
    entries = list(cache.glob("warmstart-*"))
    assert len(entries) == 1 and entries[0].name == f"warmstart-{tiny_preset.key()}"
    info = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert info["algorithm"] == "grpo" and info["seed"] == 3 and info["config"]["steps"] == 2
    assert (tmp_path / "r1" / "summary.json").exists()  # the analysis ran
    # second run with the same settings: the cached warm start is reused, not retrained
    assert main([*argv, "--out", str(tmp_path / "r2")]) == 0
    captured = capsys.readouterr()
    assert f"warm start: reusing {entries[0]}" in captured.out
    assert len(list(cache.glob("warmstart-*"))) == 1
    # the same seed gives the same run
    log1 = (tmp_path / "r1" / "train_log.jsonl").read_text()
    assert log1 == (tmp_path / "r2" / "train_log.jsonl").read_text()
    # another warm-start seed trains (and caches) another warm start; the knobs go into the warm start too
    assert main([*argv, "--warm-start-seed", "1", "--strategy-prior", "blind-common", "--favourite-share", "0.5",
                 "--out", str(tmp_path / "r3")]) == 0
    capsys.readouterr()
    assert len(list(cache.glob("warmstart-*"))) == 2
    ws3 = json.loads((tmp_path / "r3" / "run.json").read_text())["model"]
    cfg3 = json.loads((Path(ws3) / "warm_start.json").read_text())["config"]
    assert cfg3["seed"] == 1 and cfg3["strategy_prior"] == "blind-common" and cfg3["favourite_share"] == 0.5
    assert json.loads((Path(ws3) / "warm_start.json").read_text())["threads"] == 1  # the default: one thread


def test_a_killed_builds_temp_folders_are_removed_and_a_second_builder_waits_then_reuses(tiny_preset, tmp_path):
    """A killed build leaves CACHE/warmstart-KEY.tmpN; the next build of the key removes it (before: kept for good).
    A build asked for while another process holds the key's lock waits, then reuses what that process built."""
    import shutil
    import threading
    import time

    from hicra.fileio import file_lock
    from hicra.lab.sft import warm_start, warm_start_dir

    cache, lines = tmp_path / "cache", []
    out = warm_start_dir(tiny_preset, cache)
    stale = out.with_name(out.name + ".tmp123")
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    assert warm_start(tiny_preset, cache, progress=False, log=lines.append) == out
    assert not stale.exists() and (out / "warm_start.json").is_file()
    assert f"warm start: removed {stale}, left by a build that did not finish" in lines
    assert sorted(p.name for p in cache.iterdir()) == sorted([out.name, f".{out.name}.lock"])

    other, lines = tmp_path / "other", []
    built = warm_start_dir(tiny_preset, other)
    held = threading.Event()

    def builder():  # another process's build: holds the lock, then puts a finished build in place
        with file_lock(built.with_name(f".{built.name}.lock")):
            held.set()
            time.sleep(1.0)
            shutil.copytree(out, built)

    t = threading.Thread(target=builder)
    t.start()
    held.wait(10)
    assert warm_start(tiny_preset, other, progress=False, log=lines.append) == built
    t.join(10)
    assert lines == [f"warm start: another process is building {built}; waiting for it",
                     f"warm start: reusing {built}"]


def test_lab_strategy_k_and_slip_cap_reach_rl_and_the_warm_start(tiny_preset, tmp_path, capsys):
    # --strategy-k records the held-out strategies at both ends (eval.json) and prints their change;
    # --slip-cap goes into the warm start's config (and so its cache key)
    assert main(["lab", "--algo", "grpo", "--steps", "1", "--strategy-k", "2", "--slip-cap", "1", "--no-analyze",
                 "--quiet", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["config"]["strategy_k"] == 2
    assert json.loads((Path(run["model"]) / "warm_start.json").read_text())["config"]["slip_cap"] == 1
    change = json.loads((tmp_path / "r" / "eval.json").read_text())["strategy_change"]
    assert f"change {change['Hfam_change']:+.3f}" in out and "held-out strategy entropy within families" in out


def test_lab_prints_the_heldout_strategy_change_on_all_and_on_complete_problems():
    """The complete-problem line (the third controls study's reading) appears only when measured, with its own
    reading from its interval; the all-problem line keeps eval.json's reading."""
    from hicra.lab.cli import strategy_change_lines

    change = {"Hfam_before": 0.6, "Hfam_after": 0.65, "Hfam_change": 0.05, "Hfam_interval": [-0.01, 0.11],
              "reading": "-", "n_problems": 256, "n_complete": 202, "Hfam_complete_change": 0.1,
              "Hfam_complete_interval": [0.03, 0.17]}
    lines = strategy_change_lines(change, 8)
    assert len(lines) == 2 and "(8 samples a problem)" in lines[0] and lines[0].endswith("-0.010 to +0.110: -)")
    assert "202 of 256 problems" in lines[1] and lines[1].endswith("change +0.100 (+0.030 to +0.170: rise)")
    assert strategy_change_lines({**change, "Hfam_complete_interval": [-0.2, -0.1]}, 8)[1].endswith(": fall)")
    assert strategy_change_lines({**change, "Hfam_complete_change": None, "Hfam_complete_interval": None}, 8) == lines[:1]


def test_lab_threads_reach_the_warm_start_and_rl(tiny_preset, tmp_path, capsys):
    # --threads 2 trains the warm start and runs RL on two torch threads, and both records say so
    assert main(["lab", "--algo", "grpo", "--threads", "2", "--steps", "1", "--no-analyze", "--quiet",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["config"]["threads"] == 2
    assert json.loads((Path(run["model"]) / "warm_start.json").read_text())["threads"] == 2


def test_lab_lr_reaches_rl_and_keeps_the_warm_start(tiny_preset, tmp_path, capsys):
    # --lr sets RL's learning rate (run.json's config) and leaves the warm start's key alone: it is reused
    argv = ["lab", "--algo", "grpo", "--steps", "1", "--no-analyze", "--quiet", "--cache", str(tmp_path / "cache")]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--lr", "3e-4", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    a, b = (json.loads((tmp_path / r / "run.json").read_text()) for r in ("a", "b"))
    assert b["config"]["lr"] == 3e-4 and a["config"]["lr"] != 3e-4
    assert a["model"] == b["model"] and "warm start: reusing" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--alpha", "1.0"], "--alpha must be in [0, 1)"),
    (["--resume"], "--resume needs --out"),
    (["--steps", "0"], "--steps must be positive"),
    (["--execution-noise", "2"], "--execution-noise must be in [0, 1]"),
    (["--favourite-share", "1"], "--favourite-share must be in [0, 1)"),
    (["--threads", "-1"], "--threads must be in [0, "),
    (["--threads", "100000"], "--threads must be in [0, "),  # torch crashed on it
    (["--lr", "0"], "--lr must be a positive finite number"),
    (["--lr", "inf"], "--lr must be a positive finite number"),  # trained a NaN model, exit 0
    (["--seed", "-1"], "--seed must be in [0, 2**32)"),  # a traceback after the warm start was built
    (["--seed", "4294967296"], "--seed must be in [0, 2**32)"),
    (["--warm-start-seed", "-1"], "--warm-start-seed must be in [0, 2**32)"),
    (["--out", __file__], f"{__file__}, field 'out': exists and is not a directory"),
    (["--strategy-k", "-1"], "--strategy-k must be >= 0"),
    (["--slip-cap", "-2"], "--slip-cap must be a whole number >= 0"),
])
def test_lab_bad_input_exits_2_with_one_line(extra, message, capsys):
    assert main(["lab", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hicra lab: error:") and message in err and "\n" not in err


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_start_again(tmp_path, capsys):
    """Such a run can be neither resumed nor started again in place; both refusals now say what to do."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text('{"config": {"algo": "grpo"}}')
    assert main(["lab", "--out", str(tmp_path / "r")]) == 2
    assert "it stopped before its first checkpoint, so there is nothing to resume: remove the directory" in \
        capsys.readouterr().err
    assert main(["lab", "--out", str(tmp_path / "r"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume: no checkpoint (a run that stopped before its first one starts again" in err


def test_lab_resume_continues_the_recorded_run(tiny_preset, tmp_path, capsys, monkeypatch):
    """`--resume` takes the run's settings and warm start from run.json, not the flags' defaults: a GRPO run resumed
    with no --algo stays GRPO; a flag that disagrees with the record exits 2 in one line; a warm start gone from
    where the run was made is rebuilt in --cache from the settings run.json records."""
    import shutil

    ws, rl = presets.PRESETS["quick"]  # a preset with quick's warm start and other RL settings
    monkeypatch.setitem(presets.PRESETS, "other", (ws, RLConfig(**{**asdict(rl), "max_new_tokens": 12})))
    run_dir = tmp_path / "r"
    common = ["--no-analyze", "--quiet", "--out", str(run_dir)]
    assert main(["lab", "--algo", "grpo", "--seed", "3", "--steps", "1", "--cache", str(tmp_path / "c1"),
                 *common]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["warm_start"]["seed"] == 0 and Path(info["model"]).name == f"warmstart-{tiny_preset.key()}"
    assert info["lab_preset"] == "quick"
    ws_record = info["warm_start"]
    capsys.readouterr()
    for flags, field in ((["--algo", "hicra"], "config.algo"), (["--seed", "0"], "config.seed"),
                         (["--threads", "2"], "config.threads"), (["--warm-start-seed", "1"], "warm_start.seed"),
                         (["--execution-noise", "0.2"], "warm_start.execution_noise"),
                         (["--preset", "other"], "lab_preset")):
        assert main(["lab", "--resume", "--steps", "2", *flags, "--cache", str(tmp_path / "c1"), *common]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hicra lab: error:") and f"field '{field}'" in err and "\n" not in err
    assert not (tmp_path / "c1" / f"warmstart-{WarmStartConfig(**{**info['warm_start'], 'seed': 1}).key()}").exists()
    # a run cannot be shortened below the steps it has done (the check runs before anything is written)
    before = (run_dir / "run.json").read_text()
    assert main(["lab", "--resume", "--steps", "1", "--cache", str(tmp_path / "c1"), *common]) == 0  # 1 step: done
    assert (run_dir / "run.json").read_text() == before
    # the warm start moved away: it is rebuilt in another cache from run.json's settings, and the run goes on as GRPO;
    # the flags it was made with, given again, agree
    shutil.rmtree(tmp_path / "c1")
    assert main(["lab", "--resume", "--steps", "2", "--preset", "quick", "--warm-start-seed", "0", "--seed", "3",
                 "--cache", str(tmp_path / "c2"), *common]) == 0
    out = capsys.readouterr().out
    assert "as its run.json records it: algo grpo, alpha 0.2, seed 3, to step 2" in out
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [0, 1] and all(e["amplified_ratio"] == 0.0 for e in log)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["config"]["steps"] == 2 and info["model"] == str(tmp_path / "c2" / Path(info["model"]).name)
    # damaged records: named in one line before anything is rewritten (before: tracebacks, some after run.json
    # had been rewritten; a reviewer's repros)
    for name, text, needle in (("eval.json", '{"x":', "eval.json:1: bad JSON"),
                               ("probes.jsonl", None, "probes.jsonl:4: bad JSON"),
                               ("eval_curve.jsonl", '{"greedy_accuracy": 0.5}\n',
                                "eval_curve.jsonl:1, field 'step': each row needs a whole-number step, got None")):
        record = run_dir / name
        kept = record.read_bytes()
        record.write_text(text if text is not None else kept.decode() + '{"step": \n')
        run_json = (run_dir / "run.json").read_bytes()
        assert main(["lab", "--resume", "--steps", "3", "--cache", str(tmp_path / "c2"), *common]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, err
        assert (run_dir / "run.json").read_bytes() == run_json
        record.write_bytes(kept)
    info_typed = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info_typed, "config": {**info_typed["config"], "group_size": 2.5}}))
    assert main(["lab", "--resume", "--steps", "3", "--cache", str(tmp_path / "c2"), *common]) == 2
    assert "field 'config': not a valid lab RL config: group_size must be a whole number below 2**32, got 2.5" in \
        capsys.readouterr().err
    (run_dir / "run.json").write_text(json.dumps(info_typed))
    # no recorded settings and no warm start to be found: say what to pass
    del info["warm_start"]
    (run_dir / "run.json").write_text(json.dumps(info))
    shutil.rmtree(tmp_path / "c2")
    assert main(["lab", "--resume", "--steps", "3", "--cache", str(tmp_path / "c3"), *common]) == 2
    assert "give the flags it was made with" in capsys.readouterr().err
    assert main(["lab", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    # a damaged record, fewer steps than done, or no checkpoint: exit 2 before any warm start is looked for or
    # rebuilt (c4 stays empty)
    for damaged, needle in (({"config": {**info["config"], "algo": "nope"}},
                             "field 'config': not a valid lab RL config: algo must be one of"),
                            ({"warm_start": {**ws_record, "strategy_prior": "bogus"}},
                             "field 'warm_start': not valid warm-start settings"),
                            ({"warm_start": {**ws_record, "seed": 5}},
                             "field 'warm_start': the recorded warm-start settings make"),
                            ({"warm_start": None}, "field 'warm_start': not valid warm-start settings")):
        (run_dir / "run.json").write_text(json.dumps({**info, **damaged}))
        assert main(["lab", "--resume", "--cache", str(tmp_path / "c4"), *common]) == 2
        assert needle in capsys.readouterr().err
    (run_dir / "run.json").write_text(json.dumps(info))
    assert main(["lab", "--resume", "--steps", "1", "--cache", str(tmp_path / "c4"), *common]) == 2
    assert "field 'config.steps': cannot resume to 1 steps: 2 are done" in capsys.readouterr().err
    # a damaged checkpoint (cut short, or not one at all): one line naming it, not torch's traceback
    ckpt = run_dir / "checkpoints" / "last.pt"
    whole = ckpt.read_bytes()
    for damage in (whole[: len(whole) // 2], b"not a checkpoint"):
        ckpt.write_bytes(damage)
        assert main(["lab", "--resume", "--steps", "3", "--cache", str(tmp_path / "c4"), *common]) == 2
        err = capsys.readouterr().err.strip()
        assert "last.pt: damaged checkpoint, cannot resume from it" in err and "\n" not in err
    ckpt.unlink()
    assert main(["lab", "--resume", "--preset", "quick", "--cache", str(tmp_path / "c4"), *common]) == 2
    assert "last.pt: nothing to resume: no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "c4").exists()


def test_lab_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "run.json").write_text("{}")
    assert main(["lab", "--out", str(tmp_path)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_lab_falls_back_to_a_table_when_analysis_fails(tiny_preset, tmp_path, capsys, monkeypatch):
    import hicra.dynamics.analyze as analyze

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(analyze, "analyze_run", broken)
    argv = ["lab", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "analysis unavailable (RuntimeError: boom)" in out
    rows = [json.loads(line) for line in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert f"{last['step']:4d}  {last['reward']:6.3f}  {last['accuracy']:8.3f}" in out


def test_lab_tensorboard_logging_when_installed(tiny_preset, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["lab", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "r"), "--quiet", "--tensorboard",
            "--no-analyze"]
    assert main(argv) == 0
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    rewards = [e.value for e in acc.Scalars("lab/reward")]
    logged = [json.loads(line)["reward"] for line in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert rewards == pytest.approx(logged)
