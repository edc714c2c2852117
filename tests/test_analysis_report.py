"""analysis.report: the HTML report in headless Chromium, PNG export, Optuna facets, the hook.

The browser test needs Debian's `chromium` (CI installs it); without it the test fails.
Its screenshot is kept in tests/artifacts/report.png.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plotly.offline import get_plotlyjs

from analysis import PngExportError, cells, load_trials, render_show, write_report
from analysis.figures import NEAR, OUTLINE, facet_figures
from records.identity import row_trial_id

ARTIFACTS = Path(__file__).parent / "artifacts"
ALPHAS = [0.25, 0.5, 1.0, 2.0, 4.0]
BETAS = [0.8, 0.9, 0.95]
INITIAL = 5.55
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--hide-scrollbars"]


def _trial_files(sweep: Path, tid: str, row: dict, ev: np.ndarray, cos: np.ndarray) -> None:
    steps = len(ev)
    pq.write_table(pa.Table.from_pylist([row]), sweep / "trials" / f"{tid}.parquet")
    pq.write_table(pa.table(dict(
        trial_id=[tid] * steps, outer_step=np.arange(steps), tokens=np.arange(1, steps + 1) * 512,
        eval_loss=ev, train_loss=ev + 0.05, pseudo_grad_norm=np.ones(steps),
        momentum_norm=np.ones(steps), momentum_cos=cos[:steps],
        wall_s=np.linspace(0, 1, steps))), sweep / "curves" / f"{tid}.parquet")


def _trial(tid: str, a: float, b: float, H: int, R: int, seed: int, T: int,
           search: str, extra: dict | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """A made-up trial: stable below α_max(β, H), which restarts double; above it a spike that
    recovers (stable, spiked), then one that stays up (blew up), then divergence."""
    a_opt = {0.8: 1.5, 0.9: 0.75, 0.95: 0.35}.get(b, 1.5 * (1 - b) / 0.2) * (10 / H) ** 0.3
    a_max = 2 * a_opt * (2.0 if R else 1.0)
    t = np.arange(T)
    cos = 0.8 - 1.5 * min(a / a_max, 1.0) * ((t % R) if R else t) / T
    cos = np.where((t == 0) | ((R > 0) & (t % max(R, 1) == 0)), np.nan, cos)
    if a > 1.6 * a_max:
        status, ev = "diverged", INITIAL * (1 + 0.1 * t[: T // 2] ** 2)
        ev[-1] = 2.2 * INITIAL
    else:
        status = "completed"
        final = 2.0 + 0.08 * math.log2(a / a_opt) ** 2 + 0.004 * ((seed * 7 + H + R) % 5 - 2)
        ev = final + (INITIAL - final) * np.exp(-(t + 1) / 2.5)
        if a > a_max:
            ev[T // 2] = 1.35 * INITIAL  # a spike that recovers
        if a > 1.3 * a_max:
            ev[T // 2:] *= 1.4           # ... or one that stays up: it blew up
    row = dict(sweep=f"synth-{search}", trial_id=tid, alpha=a, beta=b, H=H, R=R, workers=4,
               seed=seed, outer="nesterov", kind="lm", model="tiny", lr=3e-3, outer_steps=T,
               diverge_factor=2.0, status=status, initial_loss=INITIAL, final_loss=float(ev[-1]),
               best_loss=float(ev.min()), peak_loss=float(ev[1:].max()),
               outer_steps_done=len(ev), tokens=len(ev) * H * 2048, wall_s=1.0, error=None,
               n_params=12345, reason="eval loss > 2x initial" if status == "diverged" else None)
    return {**row, **(extra or {})}, ev, cos


def write_synthetic_sweep(root: Path, search: str = "grid", Hs=(10, 50), Rs=(0, 4),
                          seeds=(0, 1), T: int = 12, n_points: int = 12,
                          extra: dict | None = None, name: str = "") -> Path:
    """A sweep folder as docs/design.md lays it out: grid, or scattered points like Optuna's.
    ``extra``: more columns (or other values) in every trial row."""
    name = name or f"synth-{search}"
    sweep = root / name
    (sweep / "trials").mkdir(parents=True)
    (sweep / "curves").mkdir()
    rng = np.random.default_rng(0)
    for H in Hs:
        for R in Rs:
            if search == "grid":
                points = [(a, b, s) for a in ALPHAS for b in BETAS for s in seeds]
            else:
                points = [(float(2 ** rng.uniform(-2, 2)), float(rng.uniform(0.8, 0.97)), 0)
                          for _ in range(n_points)]
            for a, b, s in points:
                row, ev, cos = _trial("", a, b, H, R, s, T, search, extra)
                row["trial_id"] = tid = row_trial_id(row)  # honest: records.trust checks it
                _trial_files(sweep, tid, row, ev, cos)
    spec = dict(name=name, description="A made-up sweep whose description is one long line of "
                "free text, " * 8, trial=dict(kind="lm", workers=4, outer_steps=T),
                space=dict(alpha=ALPHAS, beta=BETAS, H=list(Hs), R=list(Rs), seed=list(seeds)),
                search=dict(kind=search), resources=dict(cpu=1, gpu=0), output=str(root))
    (sweep / "sweep.json").write_text(json.dumps(dict(
        # the keys sweeps.tune.runner writes
        name=name, spec=spec, versions={"torch": "2.13.0", "pyarrow": "26.0.1"},
        git_commit="abc1234", created_at="2026-01-01T00:00:00Z",
        runs=[{"started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T01:00:00Z",
               "planned": 120, "skipped": 0, "counts": {"completed": 94, "diverged": 26},
               "force": False}])))
    return sweep


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("results")
    sweep = write_synthetic_sweep(root)
    return sweep, write_report(sweep, root / "report.html", tol=0.05)


def _chromium() -> str:
    found = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail("the browser test needs Debian's chromium (apt-get install chromium); "
                    "CI installs it")
    return found


_HEAD = """<script>window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('unhandledrejection', function (e) {
  window.__errors.push('unhandled rejection: ' + e.reason); });
var __ce = console.error; console.error = function () {
  window.__errors.push(Array.from(arguments).join(' ')); __ce.apply(console, arguments); };
</script>"""
_TAIL = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var n = 0, plots = document.querySelectorAll('.js-plotly-plot');
  plots.forEach(function (gd) { (gd.data || []).forEach(function (t) {
    if (t.type === 'heatmap') n++; }); });
  var out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({heatmaps: n, plots: plots.length,
    drawn: document.querySelectorAll('g.hm image').length, errors: window.__errors});
  document.body.appendChild(out); }, 500); });</script>"""


def _probe(page: str, tmp: Path, screenshot: Path | None = None) -> dict:
    """Open ``page`` in headless Chromium with error traps; what the page reported."""
    probed = tmp / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + _HEAD, 1)
                      .replace("</body>", _TAIL + "</body>", 1), encoding="utf-8")
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom",
           "--virtual-time-budget=15000", "--window-size=1400,3000"]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    done = subprocess.run(cmd + [probed.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no probe in the DOM (rc {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_probe_catches_a_javascript_error(tmp_path: Path) -> None:
    """The error trap works: a page that throws is reported, so a clean report means clean."""
    page = "<html><head></head><body><script>notAFunction();</script></body></html>"
    got = _probe(page, tmp_path)
    assert got["heatmaps"] == 0 and any("notAFunction" in e for e in got["errors"])


def test_report_loads_in_chromium_and_draws_every_slice(grid_report, tmp_path: Path) -> None:
    sweep, report = grid_report
    page = report.read_text(encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    got = _probe(page, tmp_path, screenshot=shot)
    trials = load_trials(sweep)
    n_slices = len(trials.groupby(["H", "R"]))
    assert n_slices == 4
    assert got["errors"] == []
    assert got["heatmaps"] == n_slices and got["drawn"] == n_slices
    assert got["plots"] == 3  # the α edges, the stability facets and the curves
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_is_self_contained(grid_report) -> None:
    _, report = grid_report
    page = report.read_text(encoding="utf-8")
    assert page.count(get_plotlyjs()[:300]) == 1  # plotly's JS once, for every figure
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched: works offline
    # the answer first, then its thresholds, the edges, the sensitivity, and sweep.json
    answer = page.index("<p class='answer'>")
    assert answer < page.index("rose more than 10% above its running minimum")
    assert page[answer:].startswith("<p class='answer'>Yes: restarts every R=4 outer steps "
                                    "widen the stable region.")
    assert answer < page.index("Stable α edge per (H, β)") < page.index("<h2>Slices")
    for rise in ("at 5%", "at 10% (used)", "at 20%", "at 50%"):
        assert rise in page
    for tol in ("within 2%", "within 5%", "within 10%", "within 20%"):
        assert tol in page
    assert "abc1234" in page and "2.13.0" in page and "synth-grid" in page
    assert "2026-01-01T01:00:00Z" in page and "<h3>runs</h3>" in page


def test_heatmap_marks_and_hover(grid_report) -> None:
    sweep, _ = grid_report
    c = cells(load_trials(sweep))
    (_, fig), = facet_figures(c, 0.05)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 4
    text = np.concatenate([np.asarray(t.text).ravel() for t in heat])
    assert "×" in text and "↑" in text  # diverged and blown-up cells are marked
    assert any(str(m).startswith("↕") for m in text)  # so are stable cells that spiked
    # each mark the figure shows is named in its legend, once
    named = [t.name for t in fig.data if t.showlegend]
    for mark, words in (("×", "diverged"), ("↑", "blew up"), ("↕", "spiked")):
        assert sum(n.startswith(f"{mark}  {words}") for n in named) == 1, named
    hover = "".join(str(h) for t in heat for h in np.asarray(t.hovertext).ravel())
    assert "n seeds=2" in hover and "final loss" in hover and "trials " in hover
    outlines = [t for t in fig.data if t.type == "scatter" and t.line.color == OUTLINE]
    assert len(outlines) == 4 and all(len(t.x) > 0 for t in outlines)
    near = [t for t in fig.data if t.type == "scatter" and t.line.color == NEAR]
    assert len(near) == 4 and any(len(t.x) > 0 for t in near)
    # colour capped at the initial loss on one shared axis, linear in loss: evenly spaced
    # ticks over an evenly spread scale, the top one naming the cap
    axis = fig.layout.coloraxis
    assert axis.cmax == pytest.approx(INITIAL)
    stops = [p for p, _ in axis.colorscale]
    assert np.allclose(np.diff(stops), stops[1] - stops[0])
    assert np.allclose(np.diff(axis.colorbar.tickvals), (axis.cmax - axis.cmin) / 5)
    assert axis.colorbar.ticktext[-1] == f"≥ {round(INITIAL, 2):g}"
    assert all(t.coloraxis == "coloraxis" for t in heat)


def test_every_outline_has_its_legend_entry_whichever_facet_draws_it() -> None:
    """Near-optimal cells only in the restart facet (R=3): its outline still gets the legend
    entry, as the stable region's does, each once."""
    rows = []
    for R in (0, 3):
        for a in (1.0, 2.0):
            for b in (0.9, 0.95):
                final = 3.0 if R == 0 else (2.0 if a == 1.0 else 2.5)
                rows.append(dict(trial_id=f"{R}-{a}-{b}", alpha=a, beta=b, H=8, R=R, seed=0,
                                 status="completed", initial_loss=5.0, final_loss=final,
                                 best_loss=final, peak_loss=final, rise=0.0))
    c = cells(pd.DataFrame(rows), tol=0.05)
    assert not c.query("R == 0")["near_optimal"].any() and c.query("R == 3")["near_optimal"].any()
    (_, fig), = facet_figures(c, 0.05)
    named = [t.name for t in fig.data if t.showlegend]
    assert named.count("stable region") == 1
    assert sum(n.startswith("near-optimal") for n in named) == 1


def test_optuna_sweep_gets_scatter_facets(tmp_path: Path) -> None:
    sweep = write_synthetic_sweep(tmp_path, search="optuna")
    out = write_report(sweep, tmp_path / "optuna.html")
    page = out.read_text(encoding="utf-8")
    # the trace names of the two kinds of facets (plotly's template names every trace type)
    assert '"name":"trial"' in page and '"name":"final loss"' not in page
    (_, fig), = facet_figures(cells(load_trials(sweep)), 0.05)  # scattered: no grid
    assert not [t for t in fig.data if t.type == "heatmap"]
    markers = [t for t in fig.data if t.type == "scatter" and t.name == "trial"]
    assert len(markers) == 4
    text = render_show(sweep)
    assert "H=50, R=4: stable" in text and "β\\α" in text


def test_theory_hook(grid_report, tmp_path: Path) -> None:
    sweep, _ = grid_report
    seen = {}

    def theory(cell_table, meta):
        seen["cells"], seen["meta"] = len(cell_table), meta["spec"]["name"]
        return go.Figure(go.Scatter(x=[0, 1], y=[0, 1], name="predicted-boundary"))

    facets = []

    def overlay(settings, alphas, betas):
        facets.append((settings["H"], settings["R"], len(alphas), len(betas)))
        return [go.Scatter(x=[0, len(alphas) - 1], y=[0, len(betas) - 1], name="overlay-line")]

    page = write_report(sweep, tmp_path / "t.html", theory=theory,
                        theory_overlay=overlay).read_text(encoding="utf-8")
    assert seen == {"cells": 60, "meta": "synth-grid"}
    assert "<h2>Theory</h2>" in page and "predicted-boundary" in page
    assert sorted(facets) == [(10, 0, 5, 3), (10, 4, 5, 3), (50, 0, 5, 3), (50, 4, 5, 3)]
    assert page.count('"name":"overlay-line"') == 4


@pytest.mark.slow  # kaleido starts a browser: ~10 s
def test_png_export(grid_report, tmp_path: Path) -> None:
    sweep, _ = grid_report
    _chromium()
    write_report(sweep, tmp_path / "r.html", png_dir=tmp_path / "png")
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["curves.png", "edges.png", "stability_0.png"]
    assert all((tmp_path / "png" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_png_export_says_when_there_is_no_browser(grid_report, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sweep, _ = grid_report
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PngExportError, match="chromium"):
        write_report(sweep, tmp_path / "r.html", png_dir=tmp_path / "png")
    assert (tmp_path / "r.html").exists()  # the HTML is written before the PNGs fail


def test_edge_figure_gives_every_line_its_own_colour() -> None:
    """Two R and two values of another setting: four lines, four colours, one legend entry each."""
    import pandas as pd

    from analysis.edge_figure import edge_figure

    rows = [dict(H=4, R=r, lr=lr, beta=b, edge=1.0, edge_kind="exact", edge_lo=1.0, edge_hi=1.0)
            for r in (0, 3) for lr in (1e-3, 3e-3) for b in (0.9, 0.95)]
    fig = edge_figure(pd.DataFrame(rows), [0.5, 1.0, 2.0])
    assert len(fig.data) == 4 and len({t.line.color for t in fig.data}) == 4


def test_edge_figure_titles_each_facet_with_a_setting_that_follows_h() -> None:
    """A budget sweep: outer_steps = ⌊budget / H⌋, one value per H. The legend is shared by
    the facets, so it named H=8's 48 rounds beside H=32's lines; each facet says its own."""
    import pandas as pd

    from analysis.edge_figure import edge_figure

    rows = [dict(H=h, outer_steps=384 // h, R=r, beta=b, edge=1.0, edge_kind="exact")
            for h in (8, 32) for r in (0, 3) for b in (0.1, 0.9)]
    fig = edge_figure(pd.DataFrame(rows), [0.5, 1.0, 2.0])
    assert {t.name for t in fig.data} == {"R=0", "R=3"}
    titles = [a.text for a in fig.layout.annotations]
    assert "H=8 · outer_steps=48" in titles and "H=32 · outer_steps=12" in titles


def _lead(page: str) -> str:
    return re.search(r"Same in every slice: (.*?)</p>", page).group(1)


def test_header_lists_only_the_settings_the_trial_kind_reads(tmp_path: Path) -> None:
    # every row carries every TrainConfig field, as the store writes them: an LM sweep has
    # toy_dim=2000 in its rows and a toy sweep model=tiny, which neither trains with
    both = {"toy_dim": 2000, "toy_power": 1.0, "corpus": "stdlib", "weight_decay": 0.1,
            "warmup_steps": 10}
    lm = write_synthetic_sweep(tmp_path, Hs=(10,), Rs=(0,), seeds=(0,), extra=both, name="lm")
    page = write_report(lm, tmp_path / "lm.html").read_text()
    assert "model=tiny" in _lead(page) and "corpus=stdlib" in _lead(page)
    assert "toy_" not in _lead(page) and "toy_dim" not in page.split("slice keys:")[-1]
    toy = write_synthetic_sweep(tmp_path, Hs=(10,), Rs=(0,), seeds=(0,), name="toy",
                                extra={**both, "kind": "toy"})
    text = render_show(toy)
    same = re.search(r"same in every slice: (.*)", text).group(1)
    assert "toy_dim=2000" in same and "kind=toy" in same
    assert "model=" not in same and "corpus=" not in same
    assert "weight_decay=" not in same and "warmup_steps=" not in same  # the toy has no AdamW
    # a user's trial (kind: python) runs the tool's inner AdamW and schedule: its header lists
    # their settings, though the LM section declares them, and not the LM's model or corpus
    user = write_synthetic_sweep(tmp_path, Hs=(10,), Rs=(0,), seeds=(0,), name="user",
                                 extra={**both, "kind": "python", "entry": "m:make"})
    same = re.search(r"same in every slice: (.*)", render_show(user)).group(1)
    assert "weight_decay=" in same and "warmup_steps=" in same and "entry=m:make" in same
    assert "model=" not in same and "toy_dim" not in same


def test_report_explains_its_columns_and_labels_its_axes(grid_report) -> None:
    sweep, report = grid_report
    page = report.read_text()
    assert "grid: yes when the cells cover the (α, β) grid" in page  # the Slices column
    assert "white-space: pre-wrap" in page  # the spec's one-line description wraps
    assert "<p class='lead'>A made-up sweep whose description" in page  # and heads the page
    from analysis.curves import curve_figure, curve_trial_ids
    from analysis import load_curves

    c = cells(load_trials(sweep))
    fig = curve_figure(c, load_curves(sweep, trial_ids=curve_trial_ids(c)))
    assert fig.layout.yaxis2.title.text == "cos(m, Δ)" and fig.layout.yaxis.title.text == "eval loss"
    # the legend stands beside the first row, not above a column of panels
    assert fig.layout.legend.orientation == "v" and fig.layout.legend.x > 1
    assert fig.layout.legend.yanchor == "top"


def test_a_fine_map_is_one_unmarked_heatmap_with_its_edge_and_a_few_ticks() -> None:
    """Hundreds of α and β values: filled column-wise, no per-cell marks, ~11 tick labels,
    the same stable outline (the cells of the stable triangle), the hover still says where."""
    from analysis.figures import FINE, TICKS
    from analysis.stability import label

    n = FINE + 12
    a, b = np.meshgrid(np.linspace(0.1, 2.0, n), np.linspace(0.0, 0.9, n))
    stable = (a + b < 1.5).ravel()
    trials = pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(n * n)], "alpha": a.ravel(), "beta": b.ravel(),
        "H": 4, "R": 0, "seed": 0, "status": np.where(stable, "completed", "diverged"),
        "initial_loss": 5.0, "final_loss": np.where(stable, 1.0 + a.ravel(), np.inf),
        "best_loss": 1.0 + a.ravel(), "peak_loss": 5.0, "rise": 0.0})
    (_, fig), = facet_figures(cells(label(trials)), 0.05)
    heat, = [t for t in fig.data if t.type == "heatmap"]
    assert heat.text is None and "β=%{customdata[1]" in heat.hovertemplate
    z = np.asarray(heat.z, dtype=float)
    assert np.isfinite(z).sum() == stable.sum()            # every stable cell coloured, no more
    assert len(fig.layout.xaxis.tickvals) <= TICKS and len(fig.layout.yaxis.tickvals) <= TICKS
    outline, = [t for t in fig.data if t.type == "scatter" and t.line.color == OUTLINE]
    assert len(outline.x) > 0


def test_the_curves_edge_is_the_lines_stable_edge_not_a_stable_cell_above_a_break() -> None:
    """A ragged β line (stable again above an unstable α): the cell drawn as "edge" is the
    stable α edge (it and every smaller α stable), not the largest stable α."""
    from analysis.curves import _chosen

    alphas = [0.5, 1.0, 2.0, 4.0, 8.0]
    ok = [True, True, True, False, True]  # 8 is stable again above 4's break
    sl = pd.DataFrame({"alpha": alphas, "beta": 0.5, "stable": ok,
                       "outcome": ["stable" if s else "blew_up" for s in ok],
                       "spiked": False, "final_mean": [3.0, 2.0, 2.5, 4.0, 2.9],
                       "trial_ids": [f"t{i}" for i in range(5)]})
    chosen = _chosen(sl)
    assert chosen["best"]["alpha"] == 1.0 and chosen["edge"]["alpha"] == 2.0
    assert chosen["blew_up"]["alpha"] == 4.0
