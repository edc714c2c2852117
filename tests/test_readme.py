"""Every command and snippet of README.md that can run on one machine, run in order.

The README cannot rot: a renamed flag, a moved file or a broken query fails here. Blocks after
`<!-- README-test: skip (reason) -->` are not run (a cluster, an AWS account); `scripts/test`
is what CI itself runs; the 15-minute main job runs as its smoke-sized twin.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!-- README-test: skip \((.+?)\) -->\s*$")
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
TWIN = {"sweeps/specs/restart_cpu.yaml": "tests/data/restart_cpu_smoke.yaml"}


def readme_blocks() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    blocks = []
    for m in BLOCK.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not SKIP.search(before):
            blocks.append((m.group(1), m.group(2)))
    return blocks


def commands(bash: str) -> list[str]:
    joined = bash.replace("\\\n", " ")
    return [c.split("  #")[0].strip() for c in joined.splitlines()
            if c.strip() and not c.strip().startswith("#")]


def localize(cmd: str) -> str:
    for long, twin in TWIN.items():
        cmd = cmd.replace(long, twin)
    # repository paths are relative to the checkout; the commands run in a scratch folder
    cmd = re.sub(r"(?<![\w/])(scripts/|\.venv/|sweeps/specs/|tests/data/|docs/results/)",
                 rf"{REPO}/\1", cmd)
    return cmd


def query_blocks() -> dict[str, str]:
    """The README's DuckDB and polars snippets, by engine, paths localized."""
    out = {}
    for kind, body in readme_blocks():
        for engine in ("duckdb", "polars"):
            if kind == "python" and f"import {engine}" in body:
                out[engine] = localize(body)
    return out


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_the_query_snippets_agree_with_analysis(engine):
    """Run the snippet on the shipped main-job results; its best α per β and its curve are
    what analysis computes from the same files."""
    import analysis

    ns: dict = {}
    exec(compile(query_blocks()[engine], f"README {engine}", "exec"), ns)
    best = ns["best"].df() if engine == "duckdb" else ns["best"].to_pandas()
    curve = ns["curve"].df() if engine == "duckdb" else ns["curve"].to_pandas()
    path = REPO / "docs" / "results" / "restart-cpu"
    c = analysis.cells(analysis.load_trials(path))
    ok = c[c.n_diverged == 0]
    want = ok.loc[ok.groupby(["H", "R", "beta"]).final_mean.idxmin(),
                  ["H", "R", "beta", "alpha", "final_mean"]].sort_values(["H", "R", "beta"])
    assert len(best) == len(want) == 18
    assert best[["H", "R", "beta", "alpha"]].values.tolist() == \
        want[["H", "R", "beta", "alpha"]].values.tolist()
    assert best.final_mean.tolist() == pytest.approx(want.final_mean.tolist(), rel=1e-12)
    one = ns["one"]
    ref = analysis.load_curves(path, trial_ids=[one])
    assert curve.outer_step.tolist() == ref.outer_step.tolist() == list(range(12))
    assert curve.eval_loss.tolist() == pytest.approx(ref.eval_loss.tolist())


def test_readme_has_the_two_commands_first():
    bash = [b for kind, b in readme_blocks() if kind == "bash"]
    assert commands(bash[0]) == ["scripts/setup && .venv/bin/diloco-sweep run sweeps/specs/restart_cpu.yaml"]
    assert commands(bash[1]) == ["scripts/test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci


@pytest.mark.slow
def test_every_readme_command_and_snippet_runs(tmp_path):
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(REPO / ".venv"), "PYTHONUNBUFFERED": "1"}
    ran = []
    for kind, body in readme_blocks():
        steps = ([localize(c) for c in commands(body) if c != "scripts/test"] if kind == "bash"
                 else [f"{shlex.quote(sys.executable)} -c {shlex.quote(localize(body))}"])
        for cmd in steps:
            if cmd.startswith("source "):
                continue  # the environment above is the activated venv
            r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=300)
            assert r.returncode == 0, f"README command failed: {cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            ran.append((cmd, r.stdout))
    outputs = "\n".join(out for _, out in ran)
    # the main job's twin and the laptop sweep both ended with a summary and a report
    assert (tmp_path / "results" / "restart-cpu" / "report.html").is_file()
    assert (tmp_path / "results" / "smoke" / "report.html").is_file()
    assert (tmp_path / "results" / "smoke" / "report.html").stat().st_size > 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing left beside it
    assert "# 4 trials" in outputs and '"summary": true' in outputs
    assert "stable fraction" in outputs  # the theory command
    assert len(ran) >= 11  # main job, 6 laptop commands, pandas, train, trainer API, theory


QUOTES = {"README.md": "## The answer on a laptop",
          "docs/results/README.md": "`diloco-sweep show docs/results/restart-cpu` opens with"}
"""Each page that quotes the main job's answer, and the words the quote follows."""


def _quoted_answers() -> dict[str, str]:
    """The first blockquote after each page's anchor, its lines joined."""
    out = {}
    for page, anchor in QUOTES.items():
        text = (REPO / page).read_text()
        m = re.search(r"\n((?:> .*\n)+)", text[text.index(anchor):])
        assert m, f"{page} quotes no answer after {anchor!r}"
        out[page] = " ".join(line[2:].strip() for line in m.group(1).splitlines())
    return out


def test_the_quoted_answer_is_what_show_says_on_the_committed_rows():
    """README.md and docs/results/README.md quote `diloco-sweep show docs/results/restart-cpu`:
    each quote is the start of the sentence generated from the committed rows, from the
    verdict through the spikes. Labels and counts of committed rows, not retrained losses,
    so this holds on any CPU."""
    from analysis import render_show

    shown = render_show(REPO / "docs" / "results" / "restart-cpu").splitlines()[2]
    for where, quote in _quoted_answers().items():
        assert shown.startswith(quote), f"{where} quotes:\n{quote}\nshow says:\n{shown}"
        assert "Spikes that recovered" in quote or "spiked" in quote, where


def test_every_answer_quoted_in_the_results_page_is_what_show_says():
    """docs/results/README.md quotes `diloco-sweep show docs/results/<store>` for each committed
    store: each quote is part of what show prints from the committed rows today, so a change
    to the answer's rules (or to a store) cannot leave a stale quote behind."""
    from analysis import render_show

    text = (REPO / "docs" / "results" / "README.md").read_text()
    quoted = re.findall(r"`diloco-sweep show docs/results/([\w-]+)`[^\n]*\n\n((?:> .*\n)+)",
                        text)
    assert {name for name, _ in quoted} >= {"restart-cpu", "restart-boundary", "restart-map",
                                            "paper-mini"}
    for name, block in quoted:
        quote = " ".join(line[2:].strip() for line in block.splitlines())
        shown = " ".join(render_show(REPO / "docs" / "results" / name).split())
        assert " ".join(quote.split()) in shown, f"{name}: quoted\n{quote}\nshow says\n{shown[:3000]}"
