"""`diloco-sweep train`: one JSON line per outer step, a summary, clear refusals."""

import argparse
import json

import pytest

from sweeps import cli_train


def run(argv, capsys):
    parser = argparse.ArgumentParser()
    cli_train.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_train_prints_a_json_line_per_outer_step_and_a_summary(capsys):
    code, lines, _ = run(["--alpha", "0.7", "--beta", "0.9", "--H", "2", "--R", "2", "--workers", "2",
                          "--outer-steps", "3", "--seed", "1", "--set", "batch_size=4",
                          "--set", "seq_len=32", "--set", "eval_batches=1"], capsys)
    assert code == 0 and len(lines) == 4
    assert [row["outer_step"] for row in lines[:3]] == [0, 1, 2]
    assert lines[0]["momentum_cos"] is None and lines[1]["momentum_cos"] is not None
    assert lines[3]["summary"] and lines[3]["status"] == "completed" and lines[3]["outer_steps_done"] == 3


@pytest.mark.parametrize("argv,message", [
    (["--beta", "1.5"], "beta: expected a number in [0, 1), got 1.5"),
    (["--model", "giant"], "model: unknown preset 'giant'"),
    (["--set", "alpah=2"], "alpah: not a trainer setting (did you mean 'alpha'?)"),
    (["--set", "noequals"], "expected KEY=VALUE"),
    (["--inner-steps-budget", "40", "--outer-steps", "3"],
     "outer_steps: not with inner_steps_budget (40)"),
    (["--inner-steps-budget", "5", "--H", "8"], "inner_steps_budget: 5 is below H = 8"),
])
def test_train_refuses_bad_input_with_exit_2(argv, message, capsys):
    code, lines, err = run(argv, capsys)
    assert code == 2 and lines == [] and message in err
