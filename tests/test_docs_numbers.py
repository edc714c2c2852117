"""The numbers the docs state about the shipped specs are the specs' own.

Every passage of README.md, docs/**/*.md and the specs' header comments that names one shipped
spec (`restart_cpu.yaml`, `restart_cpu` or its name `restart-cpu`) is read for the claims below, and each is
checked against `sweeps/specs/<spec>.yaml` as `load_spec` reads it:

- `N trials` (or `an N-trial sweep`): the spec's trial count;
- `5 α × 3 β × 2 R × 2 seeds` (or `alpha x beta`): each axis's number of values;
- `α ∈ {0.35, 0.5, 0.7}`: the axis's values; `α ∈ {0.25, 0.5, …, 3} (12)`: their number;
- `N workers`, `N outer steps` (not "every N outer steps" or "R=3 outer steps", which are R), `N inner steps per
  worker` (H × outer steps, or the spec's inner_steps_budget): the trial's settings.

A passage is a paragraph, a table row or a list item, with the paragraph after it when it ends
in ":" and the first paragraph of a section whose heading names the spec. A spec named in a
code block counts for the passage that introduces the block, but the block's own numbers are
examples, not claims, and are not read.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from sweeps.spec.parse import load_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = {p.stem: load_spec(str(p)) for p in sorted((REPO / "sweeps" / "specs").glob("*.yaml"))}
AXIS = {"α": "alpha", "alpha": "alpha", "β": "beta", "beta": "beta", "H": "H", "R": "R",
        "seed": "seed", "seeds": "seed"}
NUM = r"\d[\d,]*"


def _passages(text: str) -> list[tuple[str, str]]:
    """(passage with its code blocks, passage without them): a spec named in a code block
    belongs to the passage that introduces it, but the block's own numbers are examples."""
    blocks = re.findall(r"```.*?```", text, flags=re.S)
    for i, b in enumerate(blocks):
        text = text.replace(b, f"\0{i}\0", 1)
    parts = [p.strip() for p in re.split(r"\n\s*\n|\n(?=\s*[|*-] )", text) if p.strip()]
    out: list[str] = []
    joinable = False  # the last passage introduces the next one (and took none yet)
    for p in parts:
        if joinable:
            out[-1] += "\n" + p
            joinable = p.endswith(":")  # a heading, its intro, the block it introduces
        else:
            out.append(p)
            joinable = p.endswith(":") or p.startswith("#")
    code = re.compile(r"\0(\d+)\0")
    return [(code.sub(lambda m: blocks[int(m.group(1))], p), code.sub(" ", p)) for p in out]


def _mentions(passage: str) -> list[str]:
    return [stem for stem, spec in SPECS.items()
            if re.search(rf"(?<![\w-])({re.escape(stem)}(?:\.yaml)?|{re.escape(spec.name)})(?![\w-])",
                         passage)]


def _sources() -> list[tuple[str, str]]:
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    out = [(str(d.relative_to(REPO)), d.read_text()) for d in docs]
    for stem in SPECS:  # a spec's header comment speaks about that spec
        path = REPO / "sweeps" / "specs" / f"{stem}.yaml"
        head = "\n".join(ln.lstrip("# ") for ln in path.read_text().splitlines()
                         if ln.startswith("#"))
        out.append((f"sweeps/specs/{stem}.yaml", f"{stem}.yaml\n{head}"))
    return out


def claims() -> list[tuple[str, str, str, object, object]]:
    """(where, spec, what, stated, actual) for every claim found."""
    found = []
    for where, text in _sources():
        for passage, prose in _passages(text):
            named = _mentions(passage)
            if len(named) != 1:
                continue  # none, or a comparison of several specs: nothing to attribute
            spec = SPECS[named[0]]
            flat = " ".join(prose.split())
            axes = {k: len(a.values) for k, a in spec.space.items()}

            def add(what, stated, actual):
                found.append((where, named[0], what, stated, actual))

            for m in re.finditer(rf"(?<![\w.])({NUM})[ -]trials?\b", flat):
                add("trials", int(m.group(1).replace(",", "")), spec.n_trials)
            product = rf"(?:{NUM}) (?:α|β|H|R|seeds?|alpha|beta)"
            for m in re.finditer(rf"{product}(?: [×x] {product})+", flat):
                for n, word in re.findall(rf"({NUM}) (α|β|H|R|seeds?|alpha|beta)", m.group(0)):
                    add(f"{word} values", int(n), axes.get(AXIS[word], 1))
            for m in re.finditer(r"(α|β|H|R) ∈ \{([-\d., ]*)\}", flat):  # numbers only
                stated = [float(v) for v in m.group(2).split(",")]
                actual = [float(v) for v in spec.space[AXIS[m.group(1)]].values]
                add(f"{m.group(1)} values", stated, actual)
            for m in re.finditer(r"(α|β|H|R) ∈ \{[^}]*…[^}]*\} \((\d+)\)", flat):  # {a, …, b} (n)
                add(f"{m.group(1)} values", int(m.group(2)), axes[AXIS[m.group(1)]])
            trial = {**spec.trial}
            for m in re.finditer(rf"({NUM}) workers\b", flat):
                add("workers", int(m.group(1)), trial.get("workers"))
            for m in re.finditer(rf"(?<!every )(?<!per )(?<![=\w.])({NUM}) outer steps\b", flat):
                add("outer steps", int(m.group(1)), trial.get("outer_steps"))
            for m in re.finditer(rf"({NUM}) inner steps per worker", flat):
                hs = spec.space["H"].values if "H" in spec.space else [trial.get("H")]
                budget = trial.get("inner_steps_budget")  # T = ⌊budget / H⌋: the budget itself
                add("inner steps per worker", int(m.group(1).replace(",", "")),
                    [budget] if budget else [h * trial["outer_steps"] for h in hs])
    return found


def _agrees(stated, actual) -> bool:
    if isinstance(actual, list) and not isinstance(stated, list):
        return stated in actual
    if isinstance(stated, list):
        return len(stated) == len(actual) and all(math.isclose(a, b)
                                                  for a, b in zip(stated, actual))
    return stated == actual


def test_the_checker_finds_the_claims_it_should():
    """It reads what the docs say: every shipped spec's trial count is stated somewhere, and
    the main job's axes are spelled out."""
    stated = {(spec, what) for _, spec, what, _, _ in claims()}
    for stem in SPECS:
        assert (stem, "trials") in stated, f"no doc states how many trials {stem}.yaml has"
    assert ("restart_cpu", "α values") in stated


@pytest.mark.parametrize("where,spec,what,stated,actual",
                         claims(), ids=lambda v: v if isinstance(v, str) else "")
def test_docs_state_the_specs_numbers(where, spec, what, stated, actual):
    assert _agrees(stated, actual), f"{where} says {spec}.yaml has {stated} {what}; it has {actual}"
