"""The pieces every part of the spec is checked with: the error, the YAML line, the key hint.

A spec is checked in three places that share these: the top level and the trial settings
(``spec.py``), the axes (``space.py``) and each search kind's own section (``search/``). Every
refusal is one ``SpecError`` whose message names the key (``space.alpha``), says what is
allowed, and gives the YAML line when it is known (see docs/design.md, "The sweep spec").
"""

from __future__ import annotations

import math
from typing import Any

from records.identity import setting_kind
from trainer.config import ConfigError, TrainConfig, nearest
from trainer.model_config import PRESETS, resolve_model

from sweeps.spec.yamlmarks import LineDict, plain

__all__ = ["SpecError", "at", "item_at", "suggest", "check_key", "check_keys", "mapping", "show",
           "finite", "nonfinite_anywhere", "trial_check", "check_model", "int_at_least", "field_kind",
           "coerce", "setting", "plain"]


class SpecError(ValueError):
    """The spec is refused; the message names the key and, when known, the YAML line."""


def at(d: Any, key: Any) -> str:
    """' (line N)' for ``key`` of a mapping read from YAML, else ''."""
    line = d.lines.get(key) if isinstance(d, LineDict) else None
    if line is None:
        line = getattr(d, "line", None)
    return f" (line {line})" if line else ""


def item_at(seq: Any, i: int, fallback: str = "") -> str:
    """' (line N)' for item ``i`` of a list read from YAML, else ``fallback``."""
    lines = getattr(seq, "lines", None)
    return f" (line {lines[i]})" if lines else fallback


def suggest(key: Any, known: tuple[str, ...] | list[str]) -> str:
    """The nearest known name, or the list of them."""
    close = nearest(key, known)
    return f"; did you mean '{close}'?" if close else f"; known keys: {', '.join(known)}"


def check_key(d: dict, key: Any, known: tuple[str, ...] | list[str], prefix: str) -> None:
    if key not in known:
        raise SpecError(f"{prefix}{key}: unknown key{at(d, key)}{suggest(key, known)}")


def check_keys(d: dict, known: tuple[str, ...] | list[str], prefix: str) -> None:
    for key in d:
        check_key(d, key, known, prefix)


def mapping(d: Any, key: str, parent: Any) -> dict:
    """A spec section: absent is empty; anything but a mapping is refused."""
    if d is None:
        return LineDict()
    if not isinstance(d, dict):
        raise SpecError(f"{key}: expected a mapping, got {show(d)}{at(parent, key.split('.')[-1])}")
    return d


def show(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return type(v).__name__.replace("LineDict", "mapping").replace("LineList", "list")
    return repr(v)


def finite(v: Any) -> bool:
    return not (isinstance(v, float) and not math.isfinite(v))


def nonfinite_anywhere(v: Any) -> bool:
    if isinstance(v, dict):
        return any(nonfinite_anywhere(x) for x in v.values())
    if isinstance(v, list):
        return any(nonfinite_anywhere(x) for x in v)
    return not finite(v)


def int_at_least(d: dict, key: str, low: int, prefix: str, optional: bool = False) -> int | None:
    v = d.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(f"{prefix}{key}: expected an integer >= {low}, got {show(v)}{at(d, key)}")
    return v


# ---------------------------------------------------------------------------- trainer settings
field_kind = setting_kind
"""'int', 'float', 'str' or 'model' for a TrainConfig field (records.identity.setting_kind)."""


def coerce(name: str, value: Any) -> Any:
    """An int written for a float field becomes a float (so 1 and 1.0 are one trial)."""
    if field_kind(name) == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def trial_check(base: dict[str, Any], key: str, value: Any, prefix: str, where: str,
                label: str | None = None) -> None:
    """Build a TrainConfig with key=value on top of the trial settings; SpecError if refused."""
    label = label or f"{prefix}{key}"
    try:
        TrainConfig.from_dict({**base, key: coerce(key, value)})
    except ConfigError as e:
        msg = str(e)
        if msg.startswith(f"{key}:"):
            msg = msg[len(key) + 1:].strip()
        elif msg.startswith(f"{key}."):  # an entry of a mapping (a user's params.<name>)
            sub, _, msg = msg.partition(":")
            label, msg = f"{prefix}{sub}", msg.strip()
        raise SpecError(f"{label}: {msg}{where}") from None
    except TypeError as e:  # a constructor surprise: still name the key
        raise SpecError(f"{label}: {e}{where}") from None


def check_model(value: Any, key: str, where: str) -> None:
    if isinstance(value, dict):  # a mapping of model fields: refused here, not by the first trial
        try:
            resolve_model(plain(value), 256)
        except ConfigError as e:
            raise SpecError(f"{key}{str(e).removeprefix('model')}{where}") from None
        return
    if not isinstance(value, str):
        return
    if value not in PRESETS:
        raise SpecError(f"{key}: unknown model preset {value!r}{where}"
                        f"{suggest(value, sorted(PRESETS))}")


def setting(trial: dict[str, Any], key: str, value: Any, prefix: str, where: str) -> Any:
    """One trainer setting from the YAML, checked on top of ``trial``; its stored form."""
    if nonfinite_anywhere(value):
        raise SpecError(f"{prefix}{key}: NaN and infinity are not allowed{where}")
    trial_check(trial, key, plain(value), prefix, where)
    if key == "model":  # the LM's (a user's params are a mapping too: sweeps/spec/params.py)
        check_model(value, f"{prefix}{key}", where)
    return coerce(key, plain(value))
