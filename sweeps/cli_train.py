"""`diloco-sweep train`: one trial from the command line, one JSON line per outer step."""

from __future__ import annotations

import argparse
import json
import math
import sys

import yaml

from trainer import ConfigError, TrainConfig, train

__all__ = ["add_parser", "main", "config_from_args"]

# a flag per TrainConfig field people change most, typed as the field is annotated (a model
# is a preset name on the command line); --set reaches every field
COMMON = {name: typ if (typ := TrainConfig.field_types()[name]) in (int, float, str) else str
          for name in ("alpha", "beta", "H", "R", "workers", "outer_steps", "inner_steps_budget",
                       "seed", "outer",
                       "model", "corpus", "lr", "batch_size", "seq_len", "device", "kind")}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="run one trial and print its curve as JSON lines",
                              description="Run one DiLoCo trial (no Ray) and print one JSON line "
                                          "per outer step, then a summary line.")
    for name, typ in COMMON.items():
        flag = "--" + name.replace("_", "-")
        default = TrainConfig.__dataclass_fields__[name].default
        p.add_argument(flag, dest=name, type=typ, default=None, help=f"(default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set diverge_factor=3 (repeatable)")
    p.set_defaults(func=main)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {k: getattr(args, k) for k in COMMON if getattr(args, k) is not None}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        fields[key.strip()] = yaml.safe_load(value)
    return TrainConfig.from_dict(fields)


def _json(row: dict) -> str:
    # NaN is not JSON: momentum_cos right after a restart prints as null
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return json.dumps(clean)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        result = train(cfg, on_step=lambda row: print(_json(row), flush=True))
    except ConfigError as e:
        print(f"diloco-sweep train: {e}", file=sys.stderr)
        return 2
    print(_json({"summary": True, **result.summary()}), flush=True)
    return 0
