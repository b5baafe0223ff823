"""Study report: results.md tables and the figures."""

from __future__ import annotations

from pathlib import Path

from hicra.study.presets import AMPLIFIED_COLUMN, BASELINE, MECHANISM_COLUMNS, PLACEBO_ARMS
from hicra.study.statistics import ORDERS

# ---------------------------------------------------------------- tables and figures

def _fmt_ci(d: dict, pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    return f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}]"


def _fmt_diff(d: dict | None) -> str:
    if d is None:
        return "-"
    holm = f", Holm p={d['p_holm']:.3f}" if "p_holm" in d else ""
    return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], p={d['p_value']:.3f}{holm}"


def _pm(sd: float | None) -> str:
    return "" if sd is None else f" +- {100 * sd:.1f}"


def _pts(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _builds_lines(builds: dict | None) -> list[str]:
    """One paragraph on whether each (cell, warm-start seed)'s runs shared one build (`warm_start_builds`)."""
    if not builds:
        return []
    if not builds["rebuilt"]:
        return [f"Warm starts: each of the {builds['groups']} (cell, warm-start seed) groups' runs started from one "
                "build (the same greedy held-out evaluation).", ""]
    bad = "; ".join(f"{(b['cell'] + ' ') if b['cell'] else ''}ws{b['warm_start_seed']}: {b['n_builds']} builds "
                    f"(greedy accuracy {', '.join(f'{a:.1%}' for a in b['accuracies'])})" for b in builds["rebuilt"])
    return [f"**Deviation: warm starts rebuilt.** In {len(builds['rebuilt'])} of {builds['groups']} (cell, "
            f"warm-start seed) groups the runs started from different builds of the same warm start (rebuilt on "
            f"another machine), so they are not paired on one model: {bad}.", ""]


def _controls_study_lines(results: dict) -> list[str]:
    """The head line on the controls a study's verdicts depend on (`controls_study`, from `--controls`); a study
    with its own control cells reports them at the end instead, and one with neither says none is linked."""
    ctl = results.get("controls_study")
    if ctl is None:
        if results.get("controls"):
            return []
        return ["Controls: none linked (`--controls CONTROLS/results.json`); without passed controls no verdict of "
                "this study counts (docs/study.md, point 1).", ""]
    if ctl["all_passed"]:
        return [f"Controls: `{ctl['preset']}` ({ctl['path']}): all {ctl['n_criteria']} criteria passed, so the "
                "main verdicts count (docs/study.md, point 1).", ""]
    missed = []
    if ctl["failed"]:
        missed.append("failed: " + ", ".join(ctl["failed"]))
    if ctl["not_tested"]:
        missed.append("not tested: " + ", ".join(ctl["not_tested"]))
    return [f"**Controls: `{ctl['preset']}` ({ctl['path']}): {ctl['n_passed']} of {ctl['n_criteria']} criteria "
            f"passed ({'; '.join(missed)}). Under point 1 of the pre-registration no verdict below counts, and the "
            "phase claims are not validated (docs/study.md, D5).**", ""]


def _mdd_cell(c: dict) -> str:
    """The detectable-difference cell of a comparison row: "identical in every pair" when every paired difference is
    exactly 0 (a detectable difference of 0 there would read as infinite power)."""
    if c.get("identical"):
        return "identical in every pair"
    return f"{_pts(c['mdd_80'])} / {_pts(c['mdd_80_nested'])}"


def results_markdown(results: dict) -> str:
    code = ", ".join(f"{c[:12]} ({n} runs)" for c, n in sorted(results.get("code_versions", {}).items()))
    lines = [f"# hicra study: preset {results['preset']}", "",
             f"{results['warm_start_seeds']} warm-start seed(s) x {results['seeds']} RL seed(s) per warm start = "
             f"{len(results['pairs'])} (warm-start seed, RL seed) pairs per arm, every arm on the same pairs. "
             "Accuracies in %, 95% nested percentile-bootstrap intervals (warm-start seeds, then RL seeds within "
             "them); differences to GRPO are paired (same pairs), with nested bootstrap intervals, two-sided "
             "sign-flip p-values and Holm-adjusted p-values (family: every comparison of that endpoint). The sign-flip "
             "test flips each pair on its own, so it ignores the pairs' grouping by warm start, which the nested "
             "interval keeps: the two can disagree (p < 0.05 with an interval that holds 0, or the reverse).", "",
             *([f"**{results['banner']}**", ""] if results.get("banner") else []),
             *_controls_study_lines(results),
             *_answers_lines(results.get("preregistered")),
             *([f"Runs finished by the code of commit(s) {code}.", ""] if code else []),
             *([f"Study files recorded before these config fields existed, matched at the value that keeps the earlier "
                f"behaviour: {', '.join(f'{k} = {v}' for k, v in results['assumed_fields'].items())}.", ""]
               if results.get("assumed_fields") else []),
             *_builds_lines(results.get("warm_start_builds")),
             "| arm | AUC held-out greedy (primary) | final held-out acc. | AUC train acc. | steps to "
             f"{results['threshold']:.0%} (reached) | AUC held-out - GRPO | final acc. - GRPO | AUC - GRPO | "
             "verdicts (non-zero counts) | orders (non-zero counts) | consolidation / exploration detected | "
             "pooled verdict (order, confidence) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, a in results["per_arm"].items():
        st = a["steps_to_threshold"]
        reach = f"{st['mean_reached']:.1f} ({st['n_reached']}/{a['n_runs']})" if st["mean_reached"] is not None \
            else f"- (0/{a['n_runs']})"
        vs = a.get("vs_grpo", {})
        c = a["phases"]["counts"]
        pooled = a["phases"]["pooled"]
        oc = a["phases"].get("order_counts", {})
        lines.append(f"| {arm} | {_fmt_ci(a['auc_eval']) if 'auc_eval' in a else '-'} | "
                     f"{_fmt_ci(a['final_accuracy'])} | {_fmt_ci(a['auc'])} | {reach} | "
                     f"{_fmt_diff(vs.get('auc_eval'))} | "
                     f"{_fmt_diff(vs.get('final_accuracy'))} | {_fmt_diff(vs.get('auc'))} | "
                     f"{', '.join(f'{k} {v}' for k, v in c.items() if v) or '-'} | "
                     f"{', '.join(f'{k} {v}' for k, v in oc.items() if v) or '-'} | "
                     f"{a['phases']['consolidation_detected']}/{a['phases']['exploration_detected']} of "
                     f"{a['n_runs']} | {pooled['verdict']} "
                     f"({pooled['order']}, {pooled['confidence']:.2f}) |")
    lines += ["", f"Steps to {results['threshold']:.0%}: the first step at which the trailing moving average of the "
              "training-rollout accuracy reaches it (`hicra.stats.steps_to_threshold`; 0 when the first rollouts "
              "already do). Pooled: the arm's runs pooled by resampling runs "
              "(`detect_phases_pooled`); the control checks read its order.", ""]
    for placebo, what in PLACEBO_ARMS.items():
        vp = results["per_arm"].get("hicra", {}).get(f"vs_{placebo}")
        if vp:
            held = f"AUC held-out greedy {_fmt_diff(vp['auc_eval'])}; " if "auc_eval" in vp else ""
            lines += ["", f"HICRA - {what}: {held}final accuracy {_fmt_diff(vp['final_accuracy'])}; "
                      f"AUC {_fmt_diff(vp['auc'])}."]
    if results["comparisons"]:
        lines += ["", "## Paired comparisons and power (80% power, two-sided alpha 0.05, normal approximation)", "",
                  "| comparison | endpoint | pairs (warm starts) | mean diff [95%] | p | Holm p | SD of diffs | "
                  "smallest detectable diff (pairs iid / nested) | pairs for 3 points |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in results["comparisons"]:
            lines.append(f"| {c['a']} - {c['b']} | {c['endpoint']} | {c['n_pairs']} ({c['n_warm_starts']}) | "
                         f"{100 * c['diff']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] | "
                         f"{c['p_value']:.3f} | {c['p_holm']:.3f} | {_pts(c['sd_diff'])} | "
                         f"{_mdd_cell(c)} | {c['pairs_for_3_points'] or '-'} |")
    lines += ["", "## Accuracy gain over the warm start (held-out, points; 95% bootstrap over seeds)", "",
              "| arm | greedy: warm start -> final | greedy gain | sampled: warm start -> final | sampled gain |",
              "|---|---|---|---|---|"]
    for arm, a in results["per_arm"].items():
        if "gain_sampled" in a:
            samp = (f"{100 * a['warm_start_sampled_accuracy']:.1f} -> {_fmt_ci(a['final_sampled_accuracy'])} | "
                    f"{_fmt_ci(a['gain_sampled'])}")
        else:
            samp = "- | -"
        lines.append(f"| {arm} | {100 * a['warm_start_accuracy']:.1f} -> {_fmt_ci(a['final_accuracy'])} | "
                     f"{_fmt_ci(a['gain'])} | {samp} |")
    lines += _strategy_and_probe_lines(results)
    shown = [o for o in ORDERS if o != "too few steps" or results["error_order"]["counts"][o]]
    lines += ["", "## Which error type falls first (per run: the step at which its share of sampled responses has "
              "made half of its fall; a fall is a drop of at least 2 points between the first and last 10% of "
              "steps)", "",
              "Descriptive: the sign test counts runs as independent, but runs share warm starts, and an arm whose "
              "runs repeat another's (a phase-aware run whose switch never fired is its pair's GRPO run) counts "
              "them again in the all-runs row.", "",
              "| arm | " + " | ".join(shown) + " | sign test p (execution first vs planning first) |",
              "|---|" + "---|" * (len(shown) + 1)]
    for arm, a in list(results["per_arm"].items()) + [("all runs", {"error_order": results["error_order"]})]:
        o = a["error_order"]
        lines.append(f"| {arm} | " + " | ".join(str(o["counts"][k]) for k in shown) +
                     f" | {o['sign_test_p']:.3g} |")
    lines += ["", "## Error trends (slope of the share of sampled responses per step, x100)", "",
              "| arm | execution 1st half | execution 2nd half | planning 1st half | planning 2nd half |",
              "|---|---|---|---|---|"]
    for arm, a in results["per_arm"].items():
        t = a["error_trends"]

        def f(v):
            return "-" if v is None else f"{100 * v:+.2f}"
        lines.append(f"| {arm} | {f(t['execution']['first_half'])} | {f(t['execution']['second_half'])} | "
                     f"{f(t['planning']['first_half'])} | {f(t['planning']['second_half'])} |")
    mech = {arm: a.get("mechanism") or {} for arm, a in results["per_arm"].items()}
    if any(mech.values()):
        lines += ["", "## Mechanism check (planning tokens' share, %, mean +- SD over runs: at the warm start -> "
                  "last tenth of the steps)", "",
                  "Gradient mass: 1 - p of the sampled token; update: |A| times it (`hicra.algorithms.gradient_mass`). "
                  "HICRA at alpha changes the update by alpha x the update share; the last column is what the arm's "
                  "own mask changed.", ""]
        columns = [*MECHANISM_COLUMNS, *([AMPLIFIED_COLUMN] if any(AMPLIFIED_COLUMN in m for m in mech.values()) else [])]
        lines += ["| arm | of tokens | of gradient mass | of the update | update change (own mask) |"
                  + (" tokens amplified (own mask) |" if AMPLIFIED_COLUMN in columns else ""),
                  "|---|---|---|---|---|" + ("---|" if AMPLIFIED_COLUMN in columns else "")]

        def cell(d: dict | None) -> str:
            if not d:
                return "-"
            return (f"{100 * d['warm_start_mean']:.1f}{_pm(d['warm_start_sd'])} -> "
                    f"{100 * d['end_mean']:.1f}{_pm(d['end_sd'])}")
        for arm, m in mech.items():
            lines.append(f"| {arm} | " + " | ".join(cell(m.get(c)) for c in columns) + " |")
    if results.get("controls"):
        ctl = results["controls"]
        lines += ["", "## Control checks (pre-registered criteria: `hicra.study.presets.control_criteria`, "
                  "docs/study.md)", "",
                  f"All passed: **{'yes' if ctl['all_passed'] else 'no'}**; the main arms' verdicts count only when "
                  "every control passes.", "",
                  "| criterion | arm | cells pooled | runs showing it / tested | share | needed | passed |",
                  "|---|---|---|---|---|---|---|"]
        for c in ctl["criteria"]:
            need = (f">= {c['at_least']:.2f}" if c["at_least"] is not None else "") + \
                (f"<= {c['at_most']:.2f}" if c["at_most"] is not None else "")
            if c.get("pooled") is not None:  # pooled-order: the pooled order of each cell decides
                need = "pooled " + c["statistic"].partition(":")[2] + " (" + ", ".join(
                    f"{n}: {v or '-'}" for n, v in c["pooled"].items()) + ")"
            share = "-" if c["share"] is None else f"{c['share']:.2f}"
            passed = {True: "yes", False: "**no**", None: f"not tested ({c['reason']})"}[c["passed"]]
            lines.append(f"| {c['name']} ({c['statistic']}) | {c['arm']} | {', '.join(c['cells']) or '-'} | "
                         f"{c['hits']}/{c['n_runs'] - c['untested']} | {share} | {need} | {passed} |")
    lines += ["", "## Runs", "", "(verdict: C = consolidation detected, E = exploration detected; switch = the "
              "phase-aware arm's step of switching alpha on)", "",
              "| arm | warm-start seed | RL seed | final acc. | AUC | AUC held-out | steps to thr. | verdict | "
              "order | cons. end | switch |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        sw = r.get("phase_aware_switch_step", "")
        arm = f"{r['cell']}/{r['arm']}" if r.get("cell") else r["arm"]
        lines.append(f"| {arm} | {r.get('warm_start_seed', 0)} | {r['seed']} | {100 * r['final_accuracy']:.1f} | "
                     f"{100 * r['auc']:.1f} | {_pts(r.get('auc_eval'))} | "
                     f"{'-' if r['steps_to_threshold'] is None else int(r['steps_to_threshold'])} | "
                     f"{r['phases']['verdict']} ({_ce(r['phases'])}) | {_dash(r['phases'].get('order'))} | "
                     f"{_dash(r['phases']['consolidation_end_step'])} | {_dash(sw)} |")
    return "\n".join(lines) + "\n"


def _answers_lines(ans: dict | None) -> list[str]:
    """The pre-registered decision rules' answers (`hicra.study.statistics.preregistered_answers`)."""
    if ans is None:
        return []

    def one(r: dict) -> str:
        if r["holds"] is None:
            return f"- {r['a']} - {r['b']}: {r['answer']}"
        return (f"- {r['a']} - {r['b']}: **{r['answer']}**: {100 * r['diff']:+.1f} points [{100 * r['low']:+.1f}, "
                f"{100 * r['high']:+.1f}], Holm p={r['p_holm']:.3f}; smallest difference detectable at 80% power "
                f"{_pts(r['mdd_80'])} (pairs as independent) / {_pts(r['mdd_80_nested'])} (nested)")
    ph = ans["phases"]
    counts = ("they count" if ans["counts"] else
              "**they do not count** (point 1: the controls did not all pass)" if ans["controls"] else
              "**they do not count** (point 1: no controls study linked)")
    return ["## Pre-registered answers (docs/study.md, points 1, 6 and 7)", "",
            f"Computed by the registered rules (`hicra.study.statistics.preregistered_answers`), {counts}. Primary "
            f"endpoint `{ans['endpoint']}`; a difference holds when its Holm-adjusted p < {ans['holm_level']}.", "",
            f"**{ans['headline']}.**", "", *map(one, ans["primary"]), "", "Secondary (each arm - GRPO):", "",
            *map(one, ans["secondary"]), "",
            f"Phases (point 7): {ph['answer']}; GRPO's pooled order `{ph['grpo_pooled_order']}`.", "",
            *([f"Phase-aware: the online detector switched HICRA on in {sw['switched']} of {sw['runs']} runs; a run "
               "in which it never fired is a GRPO run.", ""] if (sw := ans.get("phase_aware_switched")) else [])]


def _strategy_and_probe_lines(results: dict) -> list[str]:
    """Per arm: the strategy-entropy trend (the phase verdict's exploration test on the rollouts' `strategy`
    column: runs detected / tested, and the mean slope with its nested bootstrap interval) and each skill probe's
    change from the warm start to the last evaluation (points; runs in which it rose)."""
    arms = results["per_arm"]
    probes = sorted({n for a in arms.values() for n in a.get("probe_change", {})})
    lines = ["", "## Strategy entropy and skill probes (per arm; 95% nested bootstrap over seeds)", "",
             "Strategy entropy: the exploration test of each run's phase verdict (`hicra.dynamics.phases`; runs "
             "detected / runs tested) and its slope (nats per 100 steps). Probes (`hicra.lab.probes`): last "
             "evaluation minus the warm start's, points, and the runs in which the probe rose.", "",
             "| arm | exploration detected / tested | strategy-entropy slope (nats/100 steps) | "
             + " | ".join(probes) + " |", "|---|---|---|" + "---|" * len(probes)]
    for arm, a in arms.items():
        ph = a["phases"]
        sl = ph.get("exploration_slope")
        slope = "-" if sl is None else (f"{100 * sl['mean']:+.3f} [{100 * sl['low']:+.3f}, {100 * sl['high']:+.3f}] "
                                        f"(n={sl['n']})")
        cells = []
        for n in probes:
            d = a.get("probe_change", {}).get(n)
            cells.append("-" if d is None else f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, "
                         f"{100 * d['high']:+.1f}] ({d['n_rose']}/{d['n']})")
        lines.append(f"| {arm} | {ph['exploration_detected']}/{ph.get('exploration_tested', '-')} | {slope} | "
                     + " | ".join(cells) + " |")
    return lines


def _dash(value) -> str:
    """A table cell: "-" for a missing value (None), else the value as written."""
    return "-" if value is None else str(value)


def _smooth(values, window: int) -> list[float]:
    """Trailing moving average (shorter windows at the start), for display."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(0, idx - window)
    return ((c[idx] - c[lo]) / (idx - lo)).tolist()


def _ce(p: dict) -> str:
    return ("C" if p["consolidation_detected"] else "") + ("E" if p["exploration_detected"] else "") or "-"


def plot_figures(results: dict, fig_dir: Path) -> list[Path]:
    """accuracy.png (training accuracy per arm, mean over seeds with a 95% bootstrap band), heldout.png (the
    held-out greedy curve per arm, whose area is the primary endpoint auc_eval; when the runs have one) and errors.png
    (execution / planning / format error shares per arm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hicra.fileio import atomic_path

    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arms = list(results["per_arm"])
    n_steps = max(len(a["curves"]["step"]) for a in results["per_arm"].values())
    w = max(1, n_steps // 12)  # display smoothing only; the statistics use the raw curves
    # small multiples: each arm against GRPO, so seven arms stay readable
    cols = min(4, len(arms))
    rows = -(-len(arms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharex=True, sharey=True,
                             squeeze=False)
    base = results["per_arm"].get(BASELINE)
    for i, arm in enumerate(arms):
        ax = axes[i // cols][i % cols]
        a = results["per_arm"][arm]
        c = a["curves"]
        color = colors[i % len(colors)]
        if base is not None and arm != BASELINE:
            ax.plot(base["curves"]["step"], _smooth(base["curves"]["accuracy_mean"], w), color="0.5", lw=1,
                    label=BASELINE)
        ax.plot(c["step"], _smooth(c["accuracy_mean"], w), label=f"{arm} (n={a['n_runs']})", color=color)
        ax.fill_between(c["step"], _smooth(c["accuracy_low"], w), _smooth(c["accuracy_high"], w), alpha=0.2,
                        color=color)
        ax.set_title(arm, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
        if i % cols == 0:
            ax.set_ylabel("training accuracy")
        if i // cols == rows - 1:
            ax.set_xlabel("RL step")
    for j in range(len(arms), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"hicra study ({results['preset']}): sampled training accuracy\nmean over seeds, 95% bootstrap "
                 f"band, {w}-step moving average", fontsize=9)
    fig.tight_layout()
    with atomic_path(fig_dir / "accuracy.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths.append(fig_dir / "accuracy.png")

    kinds = ("execution", "planning", "format")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True)
    for i, (arm, a) in enumerate(results["per_arm"].items()):
        c = a["curves"]
        for ax, k in zip(axes, kinds, strict=True):
            ax.plot(c["step"], _smooth(c[f"errors_{k}_share_mean"], w), label=arm, color=colors[i % len(colors)])
    for ax, k in zip(axes, kinds, strict=True):
        ax.set_title(f"{k} errors ({w}-step moving average)", fontsize=9)
        ax.set_xlabel("RL step")
    axes[0].set_ylabel("share of sampled responses")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(fig_dir / "errors.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths.append(fig_dir / "errors.png")
    # the primary endpoint's curve: held-out greedy accuracy at each evaluation, mean over runs, one line per arm
    # (per cell in a study with cells), its area being auc_eval
    held = {arm: a["eval_curve"] for arm, a in results["per_arm"].items() if a.get("eval_curve", {}).get("step")}
    if held:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for i, (arm, ec) in enumerate(held.items()):
            ax.plot(ec["step"], [100 * v for v in ec["accuracy_mean"]], marker="o", ms=3,
                    ls=("-", "--", "-.", ":")[i % 4],  # identical curves (an unswitched phase-aware arm) stay visible
                    color=colors[i % len(colors)], label=f"{arm} (n={results['per_arm'][arm]['n_runs']})")
        ax.set_xlabel("RL step")
        ax.set_ylabel("held-out greedy accuracy (%)")
        ax.legend(fontsize=6)
        ax.set_title(f"hicra study ({results['preset']}): held-out greedy accuracy, mean over runs\n(its area "
                     "over the step span is auc_eval)", fontsize=9)
        fig.tight_layout()
        with atomic_path(fig_dir / "heldout.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        paths.append(fig_dir / "heldout.png")
    return paths
