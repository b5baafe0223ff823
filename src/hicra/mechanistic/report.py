"""Figures and report.html sections of `hicra anchors` and `hicra graphs`.

The sections are one block between `BEGIN` and `END` markers, placed before `</body>` of report.html;
`update_report(run_dir)` replaces that block (or writes a small report.html when the run has none yet), and
`splice_sections(html, run_dir)` is what `hicra analyze`'s report calls so that a re-analysis keeps them.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from hicra.errors import InputError
from hicra.mechanistic.sentences import CLASSES

BEGIN = "<!-- hicra:mechanistic -->"
END = "<!-- /hicra:mechanistic -->"
_COLORS = {"planning": "tab:orange", "execution": "tab:blue", "answer": "tab:red", "other": "tab:gray"}


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _errorbar(ax, xs, stats, label, color, shift=0.0):
    pts = [(x + shift, s["mean"], s["interval"]) for x, s in zip(xs, stats, strict=True) if s["mean"] is not None]
    if not pts:
        return
    x, y, iv = zip(*pts, strict=True)
    lo = [m - (i[0] if i else m) for m, i in zip(y, iv, strict=True)]
    hi = [(i[1] if i else m) - m for m, i in zip(y, iv, strict=True)]
    ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=label, color=color)


def _mark_consolidation(ax, result):
    for key, label, style in (("consolidation_end_step", "consolidation end", "--"),
                              ("exploration_onset_step", "exploration onset", ":")):
        if result.get(key) is not None:
            ax.axvline(result[key], color="k", ls=style, lw=1, label=label)


def anchors_figure(result: dict):
    """Three panels against step: signed importance, |importance| and TV distance, per class, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(int(s) for s in result["steps"])
    width = max(1.0, (max(steps) - min(steps)) / 100) if steps else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, title in zip(axes, ("importance", "abs_importance", "tv_distance"),
                              ("importance = acc(keep) - acc(resampled)", "|importance|",
                               "TV distance of final answers"), strict=True):
        for k, cls in enumerate(CLASSES):
            _errorbar(ax, steps, [result["steps"][str(s)][key][cls] for s in steps], cls, _COLORS[cls],
                      (k - 1.5) * width)
        _mark_consolidation(ax, result)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.axhline(0, color="k", lw=0.5)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def graphs_figure(result: dict):
    """Three panels against step: cycles and diameter per response (with intervals), small-world omega."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(int(s) for s in result["steps"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key in zip(axes[:2], ("cycles", "diameter"), strict=True):
        _errorbar(ax, steps, [result["steps"][str(s)][key] for s in steps], key, "tab:purple")
        _mark_consolidation(ax, result)
        ax.set_title(f"{key} per response")
        ax.set_xlabel("step")
    pts = [(s, result["steps"][str(s)]["small_world"]) for s in steps
           if result["steps"][str(s)]["small_world"] is not None]
    if pts:
        axes[2].plot(*zip(*pts, strict=True), marker="o", color="tab:green")
        for s in steps:
            iv = result["steps"][str(s)].get("small_world_interval")
            if iv:
                axes[2].vlines(s, iv[0], iv[1], color="tab:green", alpha=0.5)
    else:
        axes[2].text(0.5, 0.5, "undefined at every step (see graphs.json)", ha="center", transform=axes[2].transAxes)
    _mark_consolidation(axes[2], result)
    axes[2].set_title("small-world index omega (pooled graph)")
    axes[2].set_xlabel("step")
    if result.get("consolidation_end_step") is not None or result.get("exploration_onset_step") is not None:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _iv(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    iv = stat.get("interval")
    return f"{stat['mean']:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    return f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def anchors_section(run_dir: Path) -> str:
    result = json.loads((run_dir / "anchors.json").read_text(encoding="utf-8"))
    st = result["settings"]
    rows = []
    for step, s in sorted(result["steps"].items(), key=lambda kv: int(kv[0])):
        for cls in CLASSES:
            rows.append(f"<tr><td>{step}</td><td>{cls}</td><td>{s['importance'][cls]['n_sentences']}</td>"
                        f"<td>{s['fixed_by_class'][cls]}</td><td>{_iv(s['importance'][cls])}</td>"
                        f"<td>{_iv(s['abs_importance'][cls])}</td><td>{_iv(_excess(s, cls))}</td>"
                        f"<td>{_iv(s['tv_distance'][cls])}</td></tr>")
        rows.append(f"<tr><td>{step}</td><td><em>planning - execution</em></td><td></td><td></td>"
                    f"<td>{_iv(s['importance']['gap_planning_minus_execution'])}</td>"
                    f"<td>{_iv(s['abs_importance']['gap_planning_minus_execution'])}</td>"
                    f"<td>{_iv(_excess(s, 'gap_planning_minus_execution'))}</td>"
                    f"<td>{_iv(s['tv_distance']['gap_planning_minus_execution'])}</td></tr>")
    phase = result.get("by_phase")
    if phase:
        for side in ("before", "after"):
            a = phase[side]["abs_importance"]
            x = phase[side].get("excess_abs_importance", {})
            rows.append(f"<tr><td>{side} step {phase['consolidation_end_step']} (steps "
                        f"{', '.join(map(str, phase[side]['steps']))})</td><td><em>planning - execution</em></td>"
                        f"<td></td><td></td><td></td><td>{_iv(a['gap_planning_minus_execution'])}</td>"
                        f"<td>{_iv(x.get('gap_planning_minus_execution'))}</td><td></td></tr>")
        change = (phase.get("change") or {})
        rows.append(f"<tr><td>change after - before</td><td><em>planning - execution</em></td><td></td><td></td>"
                    f"<td></td><td>{_iv(change.get('abs_importance'))}</td>"
                    f"<td>{_iv(change.get('excess_abs_importance'))}</td><td></td></tr>")
    return "\n".join([
        "<h2 id='anchors'>Counterfactual sentence importance (hicra anchors)</h2>",
        f"<p class='muted'>{st['n_problems']} held-out problems, one response each, split into {st['split']}; "
        f"K = {st['k']} continuations per arm (adaptive: {st['adaptive']}), at most {st['max_tries']} tries per "
        "resampled continuation. importance = accuracy keeping the sentence - accuracy with it resampled to a "
        "different one; intervals: bootstrap over problems. Fixed sentences (never varied) are left out of the "
        "means. See docs/mechanistic.md.</p>",
        _img(run_dir / "anchors.png", "sentence importance by class"),
        "<table><tr><th>step</th><th>class</th><th>sentences</th><th>fixed</th><th>importance</th>"
        "<th>|importance|</th><th>excess |importance| (compare classes on this)</th><th>TV distance</th></tr>"
        + "".join(rows) + "</table>"])


def _excess(step_summary: dict, key: str) -> dict | None:
    """A step's excess |importance| cell (anchors.json files made before it existed have none)."""
    return (step_summary.get("excess_abs_importance") or {}).get(key)


def graphs_section(run_dir: Path) -> str:
    result = json.loads((run_dir / "graphs.json").read_text(encoding="utf-8"))
    st = result["settings"]
    rows = []
    for step, s in sorted(result["steps"].items(), key=lambda kv: int(kv[0])):
        swi = s.get("small_world_interval")
        sw = (f"{s['small_world']:.3f}" + (f" [{swi[0]:.3f}, {swi[1]:.3f}]" if swi else "")
              if s["small_world"] is not None else f"null ({html.escape(str(s['small_world_null_reason']))})")
        share = "n/a" if s["share_with_cycle"] is None else f"{s['share_with_cycle']:.2f}"
        rows.append(f"<tr><td>{step}</td><td>{s['n_responses']}</td><td>{s['n_clusters']}</td>"
                    f"<td>{_iv(s['cycles'])}</td><td>{share}</td><td>{_iv(s['diameter'])}</td>"
                    f"<td>{_iv(s['n_nodes'])}</td><td>{sw}</td><td>{_f(s['cycles_with_backtracking'])} / "
                    f"{_f(s['cycles_without_backtracking'])}</td></tr>")
    return "\n".join([
        "<h2 id='graphs'>Reasoning graphs (hicra graphs)</h2>",
        f"<p class='muted'>{st['n_problems']} held-out problems x {st['samples']} responses; hidden states of layer "
        f"{st['layer']} at each sentence end, k-means with k = {st['clusters']}; cycles = revisits of a cluster, "
        f"diameter of each response's walk graph; omega on the pooled graph (niter {st['niter']}, nrand "
        f"{st['nrand']}). Intervals: bootstrap over problems (omega's: {st.get('omega_boot', 0)} replicates). See "
        "docs/mechanistic.md.</p>",
        _img(run_dir / "graphs.png", "reasoning graph metrics"),
        "<table><tr><th>step</th><th>responses</th><th>clusters</th><th>cycles</th><th>share with a cycle</th>"
        "<th>diameter</th><th>nodes</th><th>small-world omega</th><th>cycles with / without a backtracking "
        "phrase</th></tr>" + "".join(rows) + "</table>"])


def sections_html(run_dir: str | Path) -> str:
    """The marked block with whichever of the two sections the run directory has ("" when neither)."""
    run_dir = Path(run_dir)
    parts = []
    for name, section in (("anchors.json", anchors_section), ("graphs.json", graphs_section)):
        if (run_dir / name).is_file():
            parts.append(_checked(section, run_dir, name))
    return f"{BEGIN}\n" + "\n".join(parts) + f"\n{END}" if parts else ""


def _checked(section, run_dir: Path, name: str) -> str:
    """`section(run_dir)`, with a damaged NAME (bad JSON, or a field missing or of the wrong type) turned into an
    InputError naming the file, instead of a traceback after the measurements were made."""
    from hicra.fileio import read_json

    read_json(run_dir / name, name)  # unreadable, not UTF-8, bad JSON, not an object: one line naming the file
    try:
        return section(run_dir)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"not a complete {name} ({type(exc).__name__}: {exc}); remove it or measure again",
                         path=str(run_dir / name)) from None


def splice_sections(text: str, run_dir: str | Path) -> str:
    """`text` (a report.html) with its mechanistic block replaced by the current one, placed before </body>."""
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        stop = end + len(END)
        text = text[:start] + text[stop + 1 if text[stop:stop + 1] == "\n" else stop:]
    block = sections_html(run_dir)
    if not block:
        return text
    at = text.rfind("</body>")
    return text[:at] + block + "\n" + text[at:] if at >= 0 else text + "\n" + block


def update_report(run_dir: str | Path) -> Path:
    """Rewrite RUN_DIR/report.html (atomically) with the current mechanistic sections; a run without a report
    gets a small one holding only them (`hicra analyze` writes the full report and keeps them)."""
    from hicra.dynamics.report import _CSS
    from hicra.fileio import read_text, write_text

    run_dir = Path(run_dir)
    path = run_dir / "report.html"
    if path.is_file():
        text = read_text(path, "report")
    else:
        text = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hicra: mechanistic views"
                f"</title><style>{_CSS}</style></head><body>\n<h1>Mechanistic views: {html.escape(run_dir.name)}"
                "</h1>\n</body></html>")
    write_text(path, splice_sections(text, run_dir))
    return path
