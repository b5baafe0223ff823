"""The report: dynamics.png content and report.html rendered in headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hicra.dynamics.analyze import analyze_run
from hicra.dynamics.phases import PhaseConfig
from hicra.dynamics.report import highlight
from hicra.dynamics.synthetic import make_synthetic_run
from hicra.planning.tagger import PlanningTagger


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = make_synthetic_run(root / "run", steps=20, prompts=3, group=4, segments=3, exec_len=6, seed=5)
    out = root / "out"
    summary = analyze_run(run, out, phase_config=PhaseConfig(n_boot=199))
    return out, summary


def test_figure_and_html_are_self_contained(analysed):
    out, summary = analysed
    png = Image.open(out / "dynamics.png")
    assert png.size == (1800, 420)
    # four panels: the figure is not blank and has the series colours (matplotlib tab:red / tab:blue lines)
    arr = np.asarray(png.convert("RGB")).astype(int)
    for rgb in ((214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14)):
        assert (np.abs(arr - np.array(rgb)).sum(axis=2) < 30).sum() > 50, rgb
    html = (out / "report.html").read_text()
    # offline: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    embedded = re.search(r"id='figure'[^>]*src='data:image/png;base64,([^']+)'", html).group(1)
    assert base64.b64decode(embedded) == (out / "dynamics.png").read_bytes()
    assert f"Verdict: <b>{summary['phases']['verdict']}</b>" in html
    assert "first step (0)" in html and "last step (19)" in html and "<mark" in html
    assert "id='errors'" in html  # error-type curves (the synthetic run labels its failures)


def test_highlight_marks_planning_spans_and_escapes():
    tagger = PlanningTagger("paper")
    out = highlight("<b>x</b> Let me verify 1 < 2, wait.", tagger)
    assert out == ("&lt;b&gt;x&lt;/b&gt; <mark title=\"verification\">Let me verify</mark> 1 &lt; 2, "
                   "<mark title=\"backtracking\">wait</mark>.")


_PROBE = """
<script>
window.addEventListener('load', function () {
  var img = document.getElementById('figure'), v = document.getElementById('verdict');
  var r = img.getBoundingClientRect(), rv = v.getBoundingClientRect(), s = getComputedStyle(v);
  var out = {naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, width: r.width, height: r.height,
             verdictText: v.innerText, verdictHeight: rv.height, verdictTop: rv.top,
             verdictVisible: s.visibility === 'visible' && s.display !== 'none' && parseFloat(s.opacity) > 0,
             figureTop: r.top, marks: document.querySelectorAll('mark').length};
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (apt-get install -y chromium); "
                    "CI installs it")
def test_report_renders_in_headless_chromium(analysed, tmp_path):
    out, summary = analysed
    # a copy with a probe script that records what the browser laid out; the report itself has no script
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
           "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, f"no probe output; stderr: {res.stderr[-2000:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    # the figure decoded (its real pixel size) and is laid out with a visible size
    assert (probe["naturalWidth"], probe["naturalHeight"]) == (1800, 420)
    assert probe["width"] > 600 and probe["height"] > 100
    # the verdict is visible, above the figure, and says what summary.json says
    assert probe["verdictVisible"] and probe["verdictHeight"] > 10 and probe["verdictTop"] < probe["figureTop"]
    assert f"Verdict: {summary['phases']['verdict']}" in probe["verdictText"]
    assert probe["marks"] > 0
    # and a screenshot is not blank
    shot = tmp_path / "shot.png"
    subprocess.run([*cmd[:-2], f"--screenshot={shot}", (out / "report.html").as_uri()], capture_output=True,
                   timeout=120)
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.std() > 10


def test_figure_draws_the_strategy_panel_bands_and_both_taus():
    """With strategy labels the figure has a fifth panel (strategy-label entropy, with its band); tau_exec and
    tau_plan are drawn on every panel; the entropies and accuracy carry their 95% bands. Without the labels: four
    panels and no strategy panel."""
    import pandas as pd
    from matplotlib.collections import PolyCollection

    from hicra.dynamics.report import dynamics_figure

    steps = np.arange(30.0)
    df = pd.DataFrame({"step": steps, "rel_ppl_planning": 1 - 0.01 * steps, "rel_ppl_execution": 1 - 0.02 * steps,
                       "rel_ppl_reference": 1 - 0.015 * steps, "entropy_planning": 1.0, "entropy_execution": 0.5,
                       "semantic_entropy": 2.0, "semantic_entropy_low": 1.9, "semantic_entropy_high": 2.1,
                       "strategy_entropy": 1.0 + 0.01 * steps, "strategy_entropy_low": 0.9 + 0.01 * steps,
                       "strategy_entropy_high": 1.1 + 0.01 * steps, "accuracy": 0.3, "accuracy_low": 0.25,
                       "accuracy_high": 0.35, "mean_length": 100.0})
    phases = {"verdict": "two-phase", "order": "execution-first", "consolidation_end_step": 8,
              "exploration_onset_step": 12, "evidence": {"order": {"tau_plan": 20.0}}}
    fig = dynamics_figure(df, phases)
    main = [ax for ax in fig.axes if ax.get_title()]  # twin axes have no title
    assert [ax.get_title() for ax in main] == ["Relative perplexity", "Token entropy", "Semantic vs procedural entropy",
                                               "Strategy-label entropy", "Accuracy and response length"]
    for ax in main:
        vlines = {line.get_xdata()[0] for line in ax.get_lines() if len(set(line.get_xdata())) == 1}
        assert {8, 20, 12} <= vlines, ax.get_title()
    bands = {ax.get_title(): sum(isinstance(c, PolyCollection) for c in ax.collections) for ax in main}
    assert bands["Strategy-label entropy"] == 1 and bands["Semantic vs procedural entropy"] == 1
    assert bands["Accuracy and response length"] == 1
    fig4 = dynamics_figure(df.drop(columns=["strategy_entropy", "strategy_entropy_low", "strategy_entropy_high"]),
                           phases)
    assert "Strategy-label entropy" not in [ax.get_title() for ax in fig4.axes]
    assert len([ax for ax in fig4.axes if ax.get_title()]) == 4


def test_an_empty_panel_spans_the_runs_steps():
    """No token entropies: the empty panel's x range is the other panels' (the run's steps), not just the span of
    its tau lines (steps 8-20 of 0-29)."""
    import pandas as pd

    from hicra.dynamics.report import dynamics_figure

    steps = np.arange(30.0)
    df = pd.DataFrame({"step": steps, "rel_ppl_planning": 1 - 0.01 * steps, "rel_ppl_execution": 1 - 0.02 * steps,
                       "rel_ppl_reference": 1 - 0.015 * steps, "semantic_entropy": 2.0, "accuracy": 0.3,
                       "mean_length": 100.0})
    phases = {"verdict": "two-phase", "order": "execution-first", "consolidation_end_step": 8,
              "exploration_onset_step": 12, "evidence": {"order": {"tau_plan": 20.0}}}
    fig = dynamics_figure(df, phases)
    main = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    lo, hi = main["Token entropy"].get_xlim()
    assert lo <= 0 and hi >= 29
    assert main["Token entropy"].get_xlim() == main["Relative perplexity"].get_xlim()


def test_an_orders_caution_reaches_the_notes_the_report_and_its_json(tmp_path):
    import html as html_lib

    run = make_synthetic_run(tmp_path / "run", steps=24, prompts=8, group=4, segments=8, exec_len=8, seed=1)
    summary = analyze_run(run, tmp_path / "out", phase_config=PhaseConfig(n_boot=199))
    caution = summary["phases"]["evidence"]["order"]["caution"]  # this planted run's reference class is quiet
    assert any(caution in note for note in summary["notes"])
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<b>Caution:</b> " + html_lib.escape(caution) in page
    assert "[inf" not in page and "Infinity" not in page  # summary.json's null, not the in-memory inf
    embedded = re.search(r"<h2>Summary JSON</h2><details><summary>show</summary><pre>(.*?)</pre>", page, re.S)
    assert json.loads(html_lib.unescape(embedded.group(1)))["phases"]["verdict"] == summary["phases"]["verdict"]


def test_word_proxy_tokens_are_said_to_be_proxies(tmp_path):
    from hicra.cli import main

    rows = [{"step": s, "question": f"q{i}", "response": f"let's try another way: {i} + {s} = {i + s}",
             "correct": True} for s in range(3) for i in range(4)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "run"), "--step-field", "step",
                 "--prompt-field", "question", "--quiet"]) == 0
    summary = analyze_run(tmp_path / "run", tmp_path / "out", phase_config=PhaseConfig(n_boot=99), report=False)
    assert any("word proxy" in note for note in summary["notes"])


def test_what_a_reader_sees_of_an_inconclusive_verdict_a_shared_onset_and_a_converted_step(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hicra.cli import main
    from hicra.dynamics.report import _boundaries, confidence_text

    assert confidence_text({"verdict": "inconclusive", "confidence": 0.0}) == "n/a (inconclusive)"
    assert confidence_text({"verdict": "two-phase", "confidence": 0.976}) == "0.98"
    _, ax = plt.subplots()
    _boundaries(ax, {"consolidation_end_step": 12, "exploration_onset_step": 12})
    assert [line.get_label() for line in ax.get_lines()] == ["tau_exec (consolidation end)",
                                                             "exploration onset (= tau_exec)"]
    plt.close("all")
    rows = [{"step": s, "question": f"q{i}", "response": f"let's try another way: {i} + {s} = {i + s}",
             "correct": i % 2 == 0} for s in (50, 100, 150) for i in range(4)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "run"), "--step-field", "step",
                 "--prompt-field", "question", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--quiet", "--n-boot", "99"]) == 0
    assert "verdict: inconclusive (confidence n/a (inconclusive))" in capsys.readouterr().out
    page = (tmp_path / "out" / "report.html").read_text()
    assert "first step (0, source step 50)" in page and "last step (2, source step 150)" in page
