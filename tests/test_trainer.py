"""The invariants of docs/design.md, each a test that can fail, on the real LM trial."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainer import ConfigError, OuterOptimizer, TrainConfig, pseudo_gradient, train
from trainer.lm import LMProblem
from trainer.loop import inner_lr
from trainer.model import GPT
from trainer.model_config import PRESETS, count_params, resolve_model
from trainer.outer import average
from trainer.outer_rules import OUTER_RULES, OuterRule
from trainer.result import curve_rise

SMALL = dict(model="tiny", batch_size=4, seq_len=32, eval_batches=1, warmup_steps=2)
GOLDEN = Path(__file__).parent / "data" / "golden_tiny_curve.json"


def small(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, **kw})


def evals(result):
    return {row["tokens"]: row["eval_loss"] for row in result.curve}


def test_m1_alpha1_beta0_is_plain_adamw_whatever_H():
    # H=2 x 6 rounds and H=3 x 4 rounds and H=6 x 2 rounds: the same 12 inner steps
    runs = {H: train(small(workers=1, alpha=1.0, beta=0.0, H=H, outer_steps=12 // H)) for H in (2, 3, 6)}
    common = set(evals(runs[2])) & set(evals(runs[3])) & set(evals(runs[6]))
    assert len(common) == 2  # tokens after 6 and 12 inner steps
    for tok in common:
        ref = evals(runs[6])[tok]
        for H in (2, 3):
            assert evals(runs[H])[tok] == pytest.approx(ref, rel=1e-5, abs=1e-6)

    # and it is plain AdamW: one worker's optimizer run for 12 steps on the same stream
    cfg = small(workers=1, alpha=1.0, beta=0.0, H=6, outer_steps=2)
    problem = LMProblem(cfg)
    worker = problem.make_worker(0)
    for k in range(12):
        worker.inner_step(inner_lr(cfg, k))
    with torch.no_grad():
        torch._foreach_copy_(problem.params, worker.params)
    assert problem.evaluate() == pytest.approx(runs[6].final_loss, rel=1e-5)


def test_beta0_makes_R_irrelevant():
    a = train(small(workers=2, beta=0.0, R=0, H=2, outer_steps=4))
    b = train(small(workers=2, beta=0.0, R=2, H=2, outer_steps=4))
    assert [r["eval_loss"] for r in a.curve] == [r["eval_loss"] for r in b.curve]


def test_restart_changes_the_trajectory_when_beta_positive():
    a = train(small(workers=2, beta=0.9, R=0, H=2, outer_steps=4))
    b = train(small(workers=2, beta=0.9, R=2, H=2, outer_steps=4))
    assert a.curve[1]["eval_loss"] == b.curve[1]["eval_loss"]  # identical before t=2
    assert a.curve[2]["eval_loss"] != b.curve[2]["eval_loss"]


@pytest.mark.parametrize("kind", ["nesterov", "heavy_ball"])
def test_outer_update_matches_hand_computation(kind):
    alpha, beta = 0.5, 0.9
    theta = [torch.tensor([1.0, 2.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, alpha, beta, kind)
    d1, d2 = np.array([0.2, -0.4]), np.array([0.1, 0.3])
    opt.step([torch.tensor(d1)])
    m1 = d1                                               # m = β·0 + Δ1
    u1 = d1 + beta * m1 if kind == "nesterov" else m1
    th1 = np.array([1.0, 2.0]) - alpha * u1
    assert np.allclose(theta[0].numpy(), th1, atol=1e-15)
    opt.step([torch.tensor(d2)])
    m2 = beta * m1 + d2
    u2 = d2 + beta * m2 if kind == "nesterov" else m2
    assert np.allclose(theta[0].numpy(), th1 - alpha * u2, atol=1e-15)
    # and the torch SGD convention docs/design.md names
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    sgd = torch.optim.SGD([p], lr=alpha, momentum=beta, nesterov=kind == "nesterov")
    for d in (d1, d2):
        p.grad = torch.tensor(d)
        sgd.step()
    assert torch.allclose(p.detach(), theta[0], atol=1e-15)


@pytest.mark.parametrize("kind", list(OUTER_RULES))
def test_outer_step_with_positive_alpha_lowers_a_convex_quadratic(kind):
    # f(θ) = ½ Σ λ θ²; workers take GD steps; the outer step must move θ downhill
    lam = torch.tensor([1.0, 0.3, 0.05])
    theta = [torch.tensor([1.0, -2.0, 3.0])]
    f = lambda th: float(0.5 * (lam * th ** 2).sum())
    before = f(theta[0])
    workers = []
    for _ in range(3):
        w = theta[0].clone()
        for _ in range(4):
            w -= 0.5 * lam * w
        workers.append([w])
    OuterOptimizer(theta, alpha=0.7, beta=0.9, kind=kind).step(pseudo_gradient(theta, average(workers)))
    assert f(theta[0]) < before


def test_a_new_outer_rule_is_one_registry_entry(monkeypatch):
    """The sign rule, registered without a theory model: it trains end to end, the theory says
    it has no model, and the report's overlay draws nothing for it instead of failing."""
    from analysis.theory import has_theory
    from analysis.theory_report import toy_overlay

    def update(delta, state, hp):
        for m, d, b in zip(state["m"], delta, hp["beta"]):
            m.mul_(b).add_(d)
        return [m.sign() for m in state["m"]]

    sign = OuterRule("sign", init=lambda zeros: {"m": zeros()}, update=update, restart=("m",),
                     matrix=None, summary="θ ← θ − α·sign(m)")
    monkeypatch.setitem(OUTER_RULES, "sign", sign)
    r = train(TrainConfig(kind="toy", outer="sign", alpha=0.01, beta=0.5, H=2, outer_steps=4,
                          toy_dim=20))
    assert r.status == "completed" and r.final_loss < r.initial_loss
    assert not has_theory("sign") and has_theory("nesterov")
    trials = pd.DataFrame([dict(lr=0.5, toy_dim=20, toy_power=1.0, outer="sign", H=2, R=0)])
    assert toy_overlay(trials)({"H": 2, "R": 0, "outer": "sign"}, [0.5, 1.0], [0.0, 0.9]) == []
    with pytest.raises(ConfigError, match="outer"):
        TrainConfig(outer="no-such-rule")


def test_restart_zeroes_momentum_exactly_at_multiples_of_R():
    theta = [torch.zeros(3)]
    opt = OuterOptimizer(theta, 0.5, 0.9, restart_every=3)
    zeroed = []
    for t in range(8):
        restarted = opt.maybe_restart(t)
        if restarted:
            assert all(float(m.abs().sum()) == 0 for m in opt.m)
        zeroed.append(restarted)
        opt.step([torch.ones(3)])
    assert [t for t, z in enumerate(zeroed) if z] == [0, 3, 6]
    # in a real trial, cos(m, Δ) is undefined exactly where m was just zeroed
    r = train(small(workers=2, R=3, H=1, outer_steps=7))
    assert [row["outer_step"] for row in r.curve if math.isnan(row["momentum_cos"])] == [0, 3, 6]


def test_same_config_same_curve_bit_for_bit():
    cfg = small(workers=2, H=2, outer_steps=3, seed=3)
    a, b = train(cfg), train(cfg)
    keys = ("eval_loss", "train_loss", "pseudo_grad_norm", "momentum_norm", "tokens")
    assert [[r[k] for k in keys] for r in a.curve] == [[r[k] for k in keys] for r in b.curve]
    c = train(cfg.replace(seed=4))
    assert c.curve[-1]["eval_loss"] != a.curve[-1]["eval_loss"]


def test_huge_alpha_diverges_and_stops_early():
    rows = []
    r = train(small(workers=2, H=2, alpha=50.0, outer_steps=10), on_step=rows.append)
    assert r.status == "diverged"
    assert r.outer_steps_done < 10 and len(rows) == r.outer_steps_done
    assert r.reason and ("diverge_factor" in r.reason or "turned" in r.reason)


def test_on_step_rows_and_result_fields():
    rows = []
    r = train(small(workers=2, H=3, outer_steps=3), on_step=rows.append)
    assert r.status == "completed" and r.outer_steps_done == 3
    nan_free = lambda rs: [{k: ("nan" if v != v else v) for k, v in row.items()} for row in rs]
    assert nan_free(rows) == nan_free(r.curve)  # what on_step saw is what the result holds
    assert [row["outer_step"] for row in rows] == [0, 1, 2]
    assert r.tokens == 3 * 2 * 3 * 4 * 32 == rows[-1]["tokens"]
    assert r.final_loss < r.initial_loss and r.best_loss <= r.final_loss
    assert r.peak_loss == max(row["eval_loss"] for row in rows[1:])
    ev = [row["eval_loss"] for row in rows]
    want = max(ev[t] / min(ev[: t + 1]) - 1 for t in range(len(ev)))
    assert r.rise == pytest.approx(want, rel=1e-12) and r.summary()["rise"] == r.rise
    # how far above its best it ended: the blow-up test of docs/design.md, "Stable"
    assert r.end_rise == r.final_loss / r.best_loss - 1 and r.summary()["end_rise"] == r.end_rise


def test_rise_is_measured_against_the_running_minimum():
    """A late climb from a low loss counts in full; a curve that only falls has rise 0."""
    assert curve_rise([5.0, 4.0, 3.0]) == 0.0
    assert curve_rise([5.3, 3.4, 5.0, 3.0]) == pytest.approx(5.0 / 3.4 - 1)
    assert curve_rise([4.0, math.nan, 4.4]) == pytest.approx(0.1)  # non-finite left out
    assert curve_rise([]) == 0.0


def test_stored_curve_guards_numeric_drift():
    golden = json.loads(GOLDEN.read_text())
    r = train(TrainConfig(**golden["config"]))
    got = [row["eval_loss"] for row in r.curve]
    assert got == pytest.approx(golden["eval_loss"], rel=1e-4)


@pytest.mark.parametrize("field,value,allowed", [
    ("beta", 1.0, "[0, 1)"), ("beta", -0.1, "[0, 1)"), ("alpha", 0.0, "> 0"),
    ("alpha", float("nan"), "> 0"), ("H", 0, ">= 1"), ("workers", 0, ">= 1"), ("R", -1, ">= 0"),
    ("outer", "lion", "nesterov, heavy_ball, adam"), ("H", 2.5, "integer"),
    ("outer_beta2", 1.0, "[0, 1)"), ("outer_eps", 0.0, "> 0"),
    ("outer_eps", float("inf"), "> 0"),
])
def test_bad_settings_name_field_and_allowed(field, value, allowed):
    with pytest.raises(ConfigError, match=rf"^{field}: .*{__import__('re').escape(allowed)}"):
        TrainConfig(**{field: value})


def test_bad_model_and_corpus_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"model: unknown preset 'huge'.*tiny"):
        train(small(model="huge"))
    with pytest.raises(ConfigError, match=r"corpus: .*does not exist"):
        train(small(corpus=str(tmp_path / "missing.txt")))
    tokens = tmp_path / "train.bin"
    np.arange(5000, dtype=np.uint16).tofile(tokens)
    with pytest.raises(ConfigError, match=r"token id 4999.*vocab_size=256"):
        train(small(corpus=str(tokens)))
    with pytest.raises(ConfigError, match=r"not a trainer setting \(did you mean 'alpha'\?\)"):
        TrainConfig.from_dict({"alpah": 1.0})
    with pytest.raises(ConfigError, match=r"r: not a trainer setting \(did you mean 'R'\?\)"):
        TrainConfig.from_dict({"r": 3})  # a case slip beats 'lr', one letter away
    with pytest.raises(ConfigError, match=r"model.N_layer: .*did you mean 'n_layer'\?"):
        train(small(model={"preset": "tiny", "N_layer": 1}))


@pytest.mark.parametrize("model", [*PRESETS, {"preset": "tiny", "tie_embeddings": False},
                                   {"preset": "small", "d_ff": 100, "n_layer": 3}])
def test_the_written_out_parameter_count_is_the_models(model):
    cfg = resolve_model(model, 300)
    with torch.device("meta"):
        gpt = GPT(cfg)
    assert count_params(cfg) == sum(p.numel() for p in gpt.parameters())
    assert count_params(cfg, non_embedding=True) == count_params(cfg) - 300 * cfg.d_model


def test_a_model_too_big_for_memory_is_refused_with_the_numbers():
    from trainer.memory import check_memory, estimate_memory

    cfg = small(model="paper150m", workers=4)
    est = estimate_memory(cfg)
    assert 150e6 < est.params < 155e6 and est.state_bytes == 4 * est.params * (4 + 4 * 4)
    with pytest.raises(ConfigError, match=r"^model: 'paper150m' with workers=4.*needs about [\d.]+ GiB"
                                          r".*but cpu has 2.00 GiB free"):
        check_memory(cfg, "cpu", available=2 * 1024 ** 3)
    assert check_memory(small(), "cpu", available=2 * 1024 ** 3).total_bytes < 2 * 1024 ** 3


@pytest.mark.parametrize("status", ["completed", "diverged"])
def test_committed_main_job_rows_retrain_on_any_cpu(status):
    """What holds for the shipped rows (docs/results/README.md, "Provenance"): bit for bit only
    on one machine and torch build, so this trains the trial twice here and compares the two;
    against the committed row, which may come from another CPU (MKL picks other kernels), the
    same trial_id, status and label, and a completed trial's final loss to 1e-4 relative. A
    diverged trial is chaotic (its loss and even its last round move): its status must hold."""
    from analysis import load_trials
    from sweeps.spec.parse import load_spec
    from sweeps.store.store import trial_id
    from sweeps.tune.trial import trial_config
    from trainer.result import RISE, outcome, spiked

    root = Path(__file__).resolve().parents[1]
    spec = load_spec(root / "sweeps/specs/restart_cpu.yaml")
    rows = load_trials(root / "docs/results/restart-cpu")
    row = rows[rows["status"] == status].sort_values("trial_id").iloc[0]
    cfg = trial_config(spec, {k: row[k] for k in spec.space})
    assert trial_id(cfg) == row["trial_id"]
    result = train(cfg)
    assert result.status == status
    if status == "diverged":
        return
    again = train(cfg)  # the same machine: the same bits, every round
    assert [r["eval_loss"] for r in again.curve] == [r["eval_loss"] for r in result.curve]
    assert result.outer_steps_done == row["outer_steps_done"]
    assert result.final_loss == pytest.approx(row["final_loss"], rel=1e-4)
    def label(r):
        word = outcome(r["status"], r["final_loss"], r["initial_loss"], r["end_rise"], RISE)
        return word, spiked(word, r["rise"], RISE)

    # a trial within a point of the threshold may flip
    assert abs(row["rise"] - RISE) > 0.01 and abs(row["end_rise"] - RISE) > 0.01
    assert label(result.summary()) == label(row)


def test_a_nan_eval_leaves_best_and_peak_to_the_finite_ones():
    """As min(best, nan) and max(peak, nan) did: a NaN eval ends the trial, it does not become
    its best or peak loss."""
    import numpy as np

    from trainer.tracker import TrialTracker

    track = TrialTracker([small()], np.array([5.0]), 10, 1, 0.0)
    one = np.zeros(1, dtype=np.int64)
    for t, ev in enumerate((1.0, 0.5, math.nan)):
        track.start_round()
        track.inner(t, 0, one, np.array([[2.0]]))
        track.end_round(t, one, {}, np.array([ev]))
    r = track.results()[0]
    assert (r.status, r.best_loss, r.peak_loss) == ("diverged", 0.5, 0.5)
    assert r.reason == "eval loss turned nan after round 2"


def test_outer_step_takes_scalar_parameters():
    theta = [torch.tensor(1.0, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)]
    stats = OuterOptimizer(theta, 0.5, 0.9).step([torch.tensor(0.2, dtype=torch.float64),
                                                  torch.tensor([0.0, 0.0], dtype=torch.float64)])
    assert float(theta[0]) == pytest.approx(1.0 - 0.5 * (0.2 + 0.9 * 0.2))
    assert stats["pseudo_grad_norm"] == pytest.approx(0.2)
