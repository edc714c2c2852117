"""Cost before launch: the estimate checked against arithmetic done by hand, the loop's own
token count, `check`'s output, and the `flops` column of a real trial row."""

from __future__ import annotations

import pytest

from sweeps.cli import main
from records.columns import trial_roles
from sweeps.estimate.cost import CARDS, row_flops, sweep_cost, trial_cost
from sweeps.spec.parse import load_spec, parse_spec
from sweeps.store.store import trial_id
from sweeps.tune.trainable import result_row
from trainer import TrainConfig, train

PAPER = "sweeps/specs/paper_lm.yaml"


def test_paper150m_trial_matches_the_hand_computation():
    # paper150m: 12 layers, d 1024, SwiGLU hidden 32·ceil(8·1024/3/32) = 2752, vocab 50304, tied
    L, d, ff, V, T = 12, 1024, 2752, 50304, 1024
    block = 3 * d * d + d * d + 2 * d * ff + ff * d + 2 * d   # qkv, out, gate_up, down, 2 norms
    params = L * block + d + V * d                             # final norm, shared embedding
    cfg = TrainConfig(model="paper150m", vocab_size=V, workers=2, H=2048, outer_steps=20,
                      seq_len=T, batch_size=16, eval_batches=16)
    c = trial_cost(cfg)
    assert c.params == params == 203_318_272
    assert c.flop_params == params                       # tied: the head counts, once
    assert c.tokens == 2 * 2048 * 20 * 16 * 1024 == 1_342_177_280
    per_token = 6 * params + 12 * L * d * T
    evals = 21 * (2 * params + 4 * L * d * T) * 16 * 16 * 1024
    assert c.flops == pytest.approx(per_token * c.tokens + evals, rel=1e-12)
    assert c.flops == pytest.approx(1.84e18, rel=0.01)
    # 6·N·D alone, with the 152M non-embedding weights the preset is named for: 1.22e18
    assert 6 * (params - V * d) * c.tokens == pytest.approx(1.22e18, rel=0.01)


def test_paper_lm_sweep_is_the_papers_budget_at_every_h_and_a_thousand_gpu_hours():
    """The paper's run: 12,500 inner steps of 64 × 2048 tokens on each of 2 workers at every H
    (T = ⌊12500 / H⌋), about 3.3B tokens per trial; 300 trials, about 1,040 H100-hours at 40%."""
    sc = sweep_cost(load_spec(PAPER))
    assert sum(k for _, k, _ in sc.groups) == sc.trials == 300
    assert [g[0]["H"] for g in sc.groups] == [64, 128, 512, 1024, 2048]
    for d, _, c in sc.groups:
        H, T = d["H"], 12500 // d["H"]
        steps = c.tokens // (2 * 64 * 2048)
        assert steps == T * H and abs(steps - 12500) < H and c.evals == T + 1
        assert 3.2e9 < c.tokens < 3.3e9
    assert [c.evals - 1 for _, _, c in sc.groups] == [195, 97, 24, 12, 6]
    low, high = sc.bounds()
    assert low == high == pytest.approx(1.48e21, rel=0.01)
    hours = low / (CARDS["h100"].peak_flops * 0.4) / 3600
    assert 1000 < hours < 1080


def test_the_token_count_is_what_the_loop_consumes():
    cfg = TrainConfig(workers=2, H=3, outer_steps=2, batch_size=2, seq_len=16, eval_batches=1,
                      threads=1)
    result = train(cfg)
    assert result.status == "completed" and result.tokens == trial_cost(cfg).tokens
    assert result.n_params == trial_cost(cfg).params
    row = result_row(parse_spec({"name": "s"}), cfg, trial_id(cfg), result.summary(), "node", "now")
    assert row["flops"] == trial_cost(cfg).flops > 0
    assert trial_roles()["flops"] == "result"


def test_a_diverged_trial_costs_what_it_ran():
    cfg = TrainConfig(H=10, outer_steps=20)
    full = trial_cost(cfg)
    assert row_flops(cfg, tokens=full.tokens // 4, outer_steps_done=5) == pytest.approx(
        full.train_flops / 4 + 6 * full.eval_flops)


def test_toy_trials_have_no_estimate():
    assert trial_cost(TrainConfig(kind="toy")) is None
    assert row_flops(TrainConfig(kind="toy"), 100, 3) is None


def test_a_sampler_gets_bounds_from_the_corners_of_its_range():
    spec = parse_spec({"name": "s", "trial": {"outer_steps": 2},
                       "space": {"alpha": {"low": 0.1, "high": 1.0}, "H": {"low": 4, "high": 40}},
                       "search": {"kind": "optuna", "num_samples": 10}})
    sc = sweep_cost(spec)
    low, high = sc.bounds()
    one = trial_cost(TrainConfig(H=4, outer_steps=2)).flops
    assert low == pytest.approx(10 * one)
    assert high == pytest.approx(10 * trial_cost(TrainConfig(H=40, outer_steps=2)).flops)


def test_check_prints_the_cost_and_its_assumptions(capsys):
    assert main(["check", PAPER, "--card", "a100", "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "6·N + 12·L·d·T" in out and "50% MFU of A100" in out
    line = next(x for x in out.splitlines() if x.startswith("# sweep:"))
    assert line == "# sweep: 300 trials, 1.48e+21 FLOP, 2.64e+03 GPU-hours"
    assert "#     64  195    203M  203M   3.27G" in out                  # H, T, params, N, tokens


def test_a_cpu_spec_is_told_its_gpu_hours_are_hypothetical(capsys):
    assert main(["check", "sweeps/specs/restart_cpu.yaml"]) == 0
    out = capsys.readouterr().out
    assert "# sweep: 252 trials, 5.03e+13 FLOP" in out and "asks for no GPU" in out
    assert main(["check", PAPER]) == 0
    assert "asks for no GPU" not in capsys.readouterr().out


def test_check_refuses_an_mfu_out_of_range(capsys):
    assert main(["check", PAPER, "--mfu", "40"]) == 2
    assert "--mfu: expected a fraction in (0, 1]" in capsys.readouterr().err


def test_a_boundary_search_is_priced_line_by_line_at_its_most_probes(capsys):
    spec = load_spec("sweeps/specs/restart_boundary.yaml")
    most = spec.search.settings.max_probes() * 12          # 12 lines per H: 3 β × 2 R × 2 seeds
    sc = sweep_cost(spec)
    assert sc.counts == "most" and [(g[0]["H"], g[1]) for g in sc.groups] == [
        (4, most), (8, most), (16, most)]
    low, high = sc.bounds()
    each = [trial_cost(TrainConfig.from_dict({**spec.trial, "H": h})).flops for h in (4, 8, 16)]
    assert low is None and high == pytest.approx(most * sum(each))
    assert main(["check", "sweeps/specs/restart_boundary.yaml"]) == 0
    out = capsys.readouterr().out
    assert "corner" not in out
    head = next(i for i, x in enumerate(out.splitlines()) if x.split()[-1:] == ["trials"])
    rows = [x.split() for x in out.splitlines()[head + 1:head + 4]]
    assert [r[-1] for r in rows] == [f"≤{most}"] * 3, rows  # the trials column
    assert f"# sweep: at most {spec.n_trials} trials, {high:.3g} FLOP, " in out


def test_a_sampler_range_whose_ends_are_equal_prints_one_number(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntrial: {outer_steps: 2}\nspace:\n  alpha: {low: 0.1, high: 1.0}\n"
                    "search: {kind: optuna, sampler: random, num_samples: 10}\n")
    assert main(["check", str(path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("# sweep:"))
    one = 10 * trial_cost(TrainConfig(outer_steps=2)).flops
    assert line.startswith(f"# sweep: 10 trials at most (points chosen as it runs), {one:.3g} FLOP, ")
    assert " to " not in line, line

