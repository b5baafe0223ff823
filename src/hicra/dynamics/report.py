"""The report: `dynamics.png` (panels laid out like the paper's figure) and a self-contained `report.html`.

Panels, against training step: (1) relative perplexity, planning vs execution tokens, with the reference class
(random non-planning tokens, as many as planning tokens) dashed; (2) token entropy, planning vs execution; (3) semantic entropy
of strategic grams (with format phrases excluded when that differs) vs procedural conditional entropy; (4) the
entropy of strategy labels, only when the rollouts carry them; (5) accuracy with mean response length. Entropies
and accuracy carry their per-step 95% bootstrap intervals over prompts (shaded). tau_exec (the end of execution's
fall, = the consolidation end), tau_plan and the exploration onset found by `phases` are vertical lines. The HTML embeds every figure as base64 PNG and has no external resource (readable offline): the
verdict with its evidence, the error-type curves, and example responses from the first and last steps with
planning spans highlighted.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from hicra.fileio import write_bytes, write_text


def _series(df, name):
    if name not in df:
        return None
    values = np.asarray(df[name].to_numpy(dtype=float, na_value=np.nan), dtype=float)
    return values if np.isfinite(values).any() else None


def _boundaries(ax, phases: dict):
    end, onset = phases.get("consolidation_end_step"), phases.get("exploration_onset_step")
    tau_plan = (phases.get("evidence") or {}).get("order", {}).get("tau_plan")
    if end is not None:
        ax.axvline(end, color="tab:blue", ls="--", lw=1, label="tau_exec (consolidation end)")
    if tau_plan is not None:
        ax.axvline(tau_plan, color="tab:red", ls="--", lw=1, label="tau_plan")
    if onset is not None:  # drawn also where it equals tau_exec, so the reader sees both
        ax.axvline(onset, color="tab:purple", ls=":", lw=1,
                   label="exploration onset" + (" (= tau_exec)" if onset == end else ""))


def _band(ax, steps, df, name, color):
    lo, hi = _series(df, f"{name}_low"), _series(df, f"{name}_high")
    if lo is not None and hi is not None:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)


def _unavailable(ax, what: str):
    ax.text(0.5, 0.5, f"{what}\nnot available in these records", ha="center", va="center",
            transform=ax.transAxes, color="0.4")


def dynamics_figure(df, phases: dict, title: str = "", step_labels: dict | None = None):
    """The matplotlib Figure: 4 panels, 5 with a strategy-label entropy panel when `strategy_entropy` has values.
    `step_labels` (step -> name, e.g. model names of a converted run) label
    the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = df["step"].to_numpy(dtype=float)
    strategy = _series(df, "strategy_entropy")
    n_panels = 5 if strategy is not None else 4
    # one x range for all panels: an empty one (no token entropies) would else span only its tau lines
    fig, axes = plt.subplots(1, n_panels, figsize=(4.5 * n_panels, 4.2), sharex=True)
    panels = [
        ("Relative perplexity", [("rel_ppl_planning", "planning", "tab:red", "-"),
                                 ("rel_ppl_execution", "execution", "tab:blue", "-"),
                                 ("rel_ppl_reference", "reference (random non-planning tokens)", "0.5", "--")],
         "relative to first step"),
        ("Token entropy", [("entropy_planning", "planning", "tab:red", "-"),
                           ("entropy_execution", "execution", "tab:blue", "-")], "nats"),
    ]
    for ax, (name, lines, ylabel) in zip(axes[:2], panels, strict=True):
        drawn = False
        for col, label, color, ls in lines:
            y = _series(df, col)
            if y is not None:
                ax.plot(steps, y, marker=".", color=color, ls=ls, label=label)
                drawn = True
        if not drawn:
            _unavailable(ax, name)
        ax.set_title(name)
        ax.set_ylabel(ylabel)
    # semantic vs procedural conditional entropy (twin axes: different scales)
    ax = axes[2]
    se, pce = _series(df, "semantic_entropy"), _series(df, "procedural_cond_entropy")
    se_fmt = _series(df, "semantic_entropy_excl_format")
    if se is not None:
        ax.plot(steps, se, marker=".", color="tab:green", label="semantic entropy")
        _band(ax, steps, df, "semantic_entropy", "tab:green")
    if se_fmt is not None and (se is None or not np.allclose(se_fmt, se, equal_nan=True)):
        ax.plot(steps, se_fmt, marker=".", color="darkgreen", ls="--", label="without format phrases")
        _band(ax, steps, df, "semantic_entropy_excl_format", "darkgreen")
    ex = (phases.get("evidence") or {}).get("exploration") or {}
    tested = ex.get("values")
    if tested is not None and ex.get("measure") == "planning-phrases" and len(tested) == len(steps):
        # a text-only test's own values: each step's entropy at the common number of occurrences
        ax.plot(steps, tested, color="black", ls=":", label="as tested (common occurrences)")
    if pce is not None:
        ax2 = ax.twinx()
        ax2.plot(steps, pce, marker=".", color="tab:gray", label="procedural cond. entropy")
        ax2.set_ylabel("procedural cond. entropy (nats)", color="tab:gray")
    if se is None and pce is None:
        _unavailable(ax, "Strategic-gram entropy")
    ax.set_title("Semantic vs procedural entropy")
    ax.set_ylabel("semantic entropy (nats)", color="tab:green")
    if strategy is not None:
        ax = axes[3]
        ax.plot(steps, strategy, marker=".", color="tab:olive", label="strategy entropy")
        _band(ax, steps, df, "strategy_entropy", "tab:olive")
        ax.set_title("Strategy-label entropy")
        ax.set_ylabel("nats")
    # accuracy with length
    ax = axes[-1]
    ax.plot(steps, df["accuracy"].to_numpy(dtype=float), marker=".", color="tab:orange", label="accuracy")
    _band(ax, steps, df, "accuracy", "tab:orange")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy", color="tab:orange")
    ax.set_title("Accuracy and response length")
    ax2 = ax.twinx()
    ax2.plot(steps, df["mean_length"].to_numpy(dtype=float), color="tab:brown", ls="-.", label="mean length")
    ax2.set_ylabel("mean length (tokens)", color="tab:brown")
    for ax in axes:
        _boundaries(ax, phases)
        ax.set_xlabel("step")
        if step_labels:  # a converted run's checkpoints by their own names, at most about 10 so they do not overlap
            shown = steps[:: max(1, -(-len(steps) // 10))]
            ax.set_xticks(shown, [str(step_labels.get(str(int(s)), int(s))) for s in shown], rotation=30,
                          ha="right", fontsize=8, parse_math=False)  # names such as ckpt_$A are not math
        ax.grid(alpha=0.3)
    for ax in axes[:3]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    verdict = phases.get("verdict", "?")
    fig.suptitle(f"{title}  verdict: {verdict} (order: {phases.get('order', '?')})".strip(),
                 parse_math=False)  # a run id such as grpo_$SEED is text, not math
    fig.tight_layout()
    return fig


def errors_figure(df):
    """Error-type counts per step, or None when the records carry no error types."""
    cols = [c for c in ("n_errors_execution", "n_errors_planning", "n_errors_format") if _series(df, c) is not None]
    if not cols:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = df["step"].to_numpy(dtype=float)
    for c in cols:
        ax.plot(steps, _series(df, c), marker=".", label=c.removeprefix("n_errors_"))
    ax.set_xlabel("step")
    ax.set_ylabel("failed responses")
    ax.set_title("Error types")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def highlight(text: str, tagger, limit: int = 2000) -> str:
    """HTML of `text` (cut at `limit` characters) with each strategic-gram occurrence in <mark>."""
    cut = text[:limit]
    out, pos = [], 0
    for span in tagger.spans(cut) if tagger is not None else []:
        out.append(html.escape(cut[pos:span.start]))
        out.append(f'<mark title="{html.escape(span.category)}">{html.escape(cut[span.start:span.end])}</mark>')
        pos = span.end
    out.append(html.escape(cut[pos:]))
    if len(text) > limit:
        out.append(f" <em>[... {len(text) - limit} more characters]</em>")
    return "".join(out)


def pick_examples(table, n: int = 2) -> list[dict]:
    """Up to n responses of one step: a correct one first, then a failed one, then the rest in order."""
    rows = table.select(["prompt_id", "sample_idx", "response", "correct", "error_type"]).to_pylist()
    correct = [r for r in rows if r["correct"]]
    failed = [r for r in rows if not r["correct"]]
    picked = (correct[:1] + failed[:1] + correct[1:] + failed[1:])[:n]
    return picked


def confidence_text(phases: dict) -> str:
    """A verdict's confidence as shown to a reader: "n/a (inconclusive)" for an inconclusive verdict, whose
    confidence is 0 by rule, not a measured support."""
    if phases.get("verdict") == "inconclusive":
        return "n/a (inconclusive)"
    return "n/a" if phases.get("confidence") is None else f"{phases['confidence']:.2f}"


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{html.escape(str(k))} {_fmt(v)}" for k, v in value.items())
    return html.escape(str(value))


def _evidence_rows(phases: dict) -> str:
    ev = phases.get("evidence", {})
    rows = []
    sections = [("order", ev.get("order"))]
    sections += [(f"consolidation: {k}", v) for k, v in (ev.get("consolidation") or {}).items()]
    sections += [("exploration", ev.get("exploration"))]
    for section, part in sections:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            rows.append(f"<tr><td>{html.escape(section)}</td><td>{html.escape(key)}</td><td>{_fmt(value)}</td></tr>")
    for key in ("reason", "n_runs", "agreement", "consolidation_end_interval_over_runs",
                "consolidation_end_interval_source", "exploration_slope_interval_over_runs",
                "exploration_slope_interval_source"):
        if key in ev:
            rows.append(f"<tr><td>run</td><td>{key}</td><td>{_fmt(ev[key])}</td></tr>")
    for name, trend in ev.get("side_trends", {}).items():
        rows.append(f"<tr><td>side trend</td><td>{html.escape(name)}</td><td>"
                    + ", ".join(f"{k} {_fmt(v)}" for k, v in trend.items()) + "</td></tr>")
    return "\n".join(rows)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;max-width:1500px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
#verdict{font-size:20px;padding:12px 16px;border-radius:6px;background:#eef4ff;border:1px solid #9bb8e8}
#verdict.two-phase{background:#e9f7ec;border-color:#8cc79a} #verdict.inconclusive{background:#f6f1e6;border-color:#d4b77a}
img{max-width:100%} table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px}
mark{background:#ffe08a;padding:0 1px} .resp{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;
background:#fafafa;border:1px solid #eee;padding:8px;margin:6px 0 14px} .muted{color:#777}
"""


def render_html(summary: dict, df, *, figure_png: bytes, errors_png: bytes | None,
                examples: dict[str, list[dict]], tagger=None) -> str:
    phases = summary["phases"]
    title = summary.get("run", {}).get("run_id", "run")
    verdict = phases["verdict"]
    ev = phases.get("evidence", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>hicra dynamics: {html.escape(str(title))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Training dynamics: {html.escape(str(title))}</h1>",
        f"<div id='verdict' class='{html.escape(verdict)}'>Verdict: <b>{html.escape(verdict)}</b>"
        f" &middot; order: <b>{_fmt(phases.get('order'))}</b>"
        f" &middot; consolidation end: <b>{_fmt(phases.get('consolidation_end_step'))}</b>"
        f" &middot; exploration onset: <b>{_fmt(phases.get('exploration_onset_step'))}</b>"
        f" &middot; confidence: <b>{confidence_text(phases)}</b>"
        f"<div class='muted'>{html.escape(str(ev.get('summary', ev.get('reason', ''))))}</div>"
        + (f"<div><b>Caution:</b> {html.escape(str((ev.get('order') or {})['caution']))}</div>"
           if (ev.get("order") or {}).get("caution") else "") + "</div>",
        "<h2>Dynamics</h2>",
        f"<img id='figure' alt='training dynamics figure' src='data:image/png;base64,"
        f"{base64.b64encode(figure_png).decode()}'>",
        "<h2>Evidence</h2>",
        f"<p class='muted'>{html.escape(str(ev.get('method', '')))}</p>",
        f"<table><tr><th>test</th><th>quantity</th><th>value</th></tr>{_evidence_rows(phases)}</table>",
        "<h2>Error types</h2>",
    ]
    if errors_png is not None:
        parts.append(f"<img id='errors' alt='error-type curves' src='data:image/png;base64,"
                     f"{base64.b64encode(errors_png).decode()}'>")
    else:
        parts.append("<p class='muted'>The records carry no error types.</p>")
    final = summary.get("final", {})
    parts.append("<h2>Final step</h2><table>" + "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in final.items()) + "</table>")
    for label, rows in examples.items():
        parts.append(f"<h2>Example responses: {html.escape(label)}</h2>")
        if not rows:
            parts.append("<p class='muted'>none</p>")
        for r in rows:
            status = "correct" if r["correct"] else f"failed ({html.escape(str(r.get('error_type') or 'unlabelled'))})"
            parts.append(f"<div class='muted'>prompt {html.escape(str(r['prompt_id']))}, sample "
                         f"{html.escape(str(r['sample_idx']))}: {status}</div>"
                         f"<div class='resp'>{highlight(r['response'] or '', tagger)}</div>")
    skipped = summary.get("skipped", [])
    if skipped:
        parts.append(f"<h2>Skipped input ({len(skipped)})</h2><ul>" + "".join(
            f"<li>{html.escape(str(s))}</li>" for s in skipped[:200]) + "</ul>")
    notes = summary.get("notes", [])
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>Summary JSON</h2><details><summary>show</summary><pre>"
                 + html.escape(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=1,
                                          default=str)) + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | os.PathLike, summary: dict, df, *, examples: dict[str, list[dict]],
                 tagger=None) -> tuple[Path, Path]:
    """Write dynamics.png and report.html (atomically) into `out_dir`."""
    out_dir = Path(out_dir)
    title = str(summary.get("run", {}).get("run_id", ""))
    figure_png = _png(dynamics_figure(df, summary["phases"], title, summary.get("step_labels")))
    efig = errors_figure(df)
    errors_png = _png(efig) if efig is not None else None
    png_path, html_path = out_dir / "dynamics.png", out_dir / "report.html"
    write_bytes(png_path, figure_png)
    from hicra.dynamics.analyze import _json_safe

    # the page shows what summary.json holds (an infinite interval end is null there, "n/a" here), and its embedded
    # copy is valid JSON
    text = render_html(_json_safe(summary), df, figure_png=figure_png, errors_png=errors_png, examples=examples,
                       tagger=tagger)
    write_text(html_path, with_mechanistic_sections(text, out_dir))
    return png_path, html_path


def with_mechanistic_sections(text: str, out_dir: str | os.PathLike) -> str:
    """The report with the `hicra anchors` / `hicra graphs` sections of `out_dir`, when they exist, kept."""
    from hicra.mechanistic.report import splice_sections

    return splice_sections(text, out_dir)
