"""Batched workers (trainer.batched) do the sequential reference's math, piece by piece and whole."""

import copy

import pytest
import torch

from trainer import ConfigError, TrainConfig, train
from trainer.batched import BatchedGroup, StackedAdamW, clip_per_slot_, stacked_loss
from trainer.lm import LMProblem, adamw_for
from trainer.loop import SequentialGroup
from trainer.model import GPT
from trainer.model_config import resolve_model

SMALL = dict(model="tiny", batch_size=4, seq_len=32, eval_batches=1, warmup_steps=2, threads=1)


def small(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, **kw})


def _models(S: int, tie: bool) -> list[GPT]:
    cfg = resolve_model({"tie_embeddings": tie}, 256)
    out = []
    for s in range(S):
        torch.manual_seed(100 + s)
        out.append(GPT(cfg))
    return out


def _stack(models: list[GPT]) -> dict[str, torch.Tensor]:
    return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
            for n, _ in models[0].named_parameters()}


@pytest.mark.parametrize("tie", [True, False])
def test_stacked_loss_and_grads_equal_each_models_own(tie):
    models = _models(3, tie)
    params = _stack(models)
    assert ("head.weight" in params) == (not tie)  # the tied head is one tensor, listed once
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 256, (3, 2, 16), generator=g)
    tgt = torch.randint(0, 256, (3, 2, 16), generator=g)
    losses = stacked_loss(models[0], params, idx, tgt)
    losses.sum().backward()
    for s, m in enumerate(models):
        ref = m(idx[s], tgt[s])
        ref.backward()
        assert losses[s].item() == pytest.approx(ref.item(), rel=1e-6)
        for n, p in m.named_parameters():
            assert torch.allclose(params[n].grad[s], p.grad, rtol=1e-5, atol=1e-7), n


def test_stacked_adamw_and_clip_equal_torch_per_slot():
    cfg = small(weight_decay=0.1, grad_clip=1.0)
    models = _models(3, True)
    params = _stack(models)
    names = list(params)
    opt = StackedAdamW(list(params.values()), cfg)
    refs = [adamw_for(m, cfg) for m in models]
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        lr = 1e-2 * (step + 1)
        # slot 0 is clipped hard, slot 2 not at all: each slot's own norm decides
        scale = torch.tensor([10.0, 0.05, 1e-4])
        grads = [torch.randn(p.shape, generator=g) * scale.view(-1, *[1] * (p.dim() - 1))
                 for p in params.values()]
        for s, (m, ref) in enumerate(zip(models, refs)):
            named = dict(m.named_parameters())
            for n, gr in zip(names, grads):
                named[n].grad = gr[s].clone()
            torch.nn.utils.clip_grad_norm_(list(m.parameters()), cfg.grad_clip, foreach=True)
            for group in ref.param_groups:
                group["lr"] = lr
            ref.step()
        clip_per_slot_(grads, cfg.grad_clip)
        opt.step(list(params.values()), grads, lr)
    for s, m in enumerate(models):
        for n, p in m.named_parameters():
            assert torch.allclose(params[n][s], p, rtol=1e-6, atol=1e-8), n


CASES = [dict(workers=1, H=2, R=0, outer_steps=2, alpha=1.0, beta=0.0),
         dict(workers=2, H=3, R=0, outer_steps=3),
         dict(workers=4, H=2, R=2, outer_steps=4, beta=0.95),
         dict(workers=3, H=4, R=1, outer_steps=2, outer="heavy_ball", split="by_file")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"M{c['workers']}-H{c['H']}-R{c['R']}")
def test_batched_curve_equals_sequential(case):
    seq = train(small(batched="off", **case))
    bat = train(small(batched="on", **case))
    assert seq.status == bat.status == "completed"
    assert bat.tokens == seq.tokens and bat.outer_steps_done == seq.outer_steps_done
    for a, b in zip(seq.curve, bat.curve):
        for key in ("eval_loss", "train_loss", "pseudo_grad_norm", "momentum_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
    assert bat.final_loss < bat.initial_loss


def test_batched_diverges_like_sequential():
    cfg = small(workers=2, H=2, alpha=50.0, outer_steps=6)
    seq, bat = train(cfg.replace(batched="off")), train(cfg.replace(batched="on"))
    assert seq.status == bat.status == "diverged"
    assert bat.outer_steps_done == seq.outer_steps_done and bat.tokens == seq.tokens


def test_group_choice_follows_the_batched_setting():
    assert small(batched="on").batched_on("cpu") and not small(batched="off").batched_on("cpu")
    assert small(batched="auto", workers=4).batched_on("cuda")
    assert not small(batched="auto", workers=1).batched_on("cuda")
    assert isinstance(LMProblem(small(batched="on")).make_group(), BatchedGroup)
    assert isinstance(LMProblem(small(batched="off")).make_group(), SequentialGroup)
    with pytest.raises(ConfigError, match="batched"):
        small(batched="yes")


def test_batched_group_keeps_the_problems_theta_untouched_and_loads_it():
    problem = LMProblem(small(workers=3, batched="on"))
    before = copy.deepcopy([p.detach() for p in problem.params])
    group = problem.make_group()
    group.load(problem.params)
    group.inner_step(1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, problem.params))
    means = group.mean_params()
    assert [m.shape for m in means] == [p.shape for p in problem.params]
    assert not all(torch.equal(a, b) for a, b in zip(means, problem.params))


@pytest.mark.parametrize("batched", ["off", "on"])
def test_diverge_check_every_stops_an_inner_blowup_mid_round(batched):
    # inner lr 0.3: the first round's eval still passes, the round's train losses do not
    cfg = small(workers=2, H=8, outer_steps=3, lr=0.3, warmup_steps=0, batched=batched)
    late = train(cfg)
    early = train(cfg.replace(diverge_check_every=1))
    assert late.status == early.status == "diverged"
    assert early.outer_steps_done == 0 and "inner train loss" in early.reason
    assert early.tokens < cfg.H * cfg.workers * cfg.batch_size * cfg.seq_len < late.tokens
    with pytest.raises(ConfigError, match="diverge_check_every"):
        small(diverge_check_every=-1)
