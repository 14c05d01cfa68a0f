"""Naming runs by what differs among them: `lr=0.01`, `lr=0.1 batch=64`, not by their ids.

Compared runs are told apart by the params that differ among them (user params and the
seed first; auto-captured ones, by the last part of their dotted key, only when neither
differs), each value written as `exact` writes it (a float32 `0.009999999776482582` is
`0.01`; an unset value is `-`). When nothing differs, or two runs would get the same
name, the run's name or its short id tells them apart. Labels are escaped (`printable`)
and cut to a width, never HTML-escaped: each view escapes for its own medium. Pure:
manifests in, text out.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from mlrepro.compare.listing import differing
from mlrepro.compare.sections import flatten, same_value
from mlrepro.compare.text import exact, printable, short

LABEL_WIDTH = 36   # a legend entry or a table header, not a sentence
KEY_WIDTH = 16
VALUE_WIDTH = 14
MISSING = "-"      # the param is not set in this run


def short_id(run_id) -> str:
    """The random tail of a run id (`20260528T202640-a1a1a1a1a1` -> `a1a1a1a1a1`).

    It is what `mlrepro show` and every other command accept as a prefix.
    """
    text = printable(run_id)
    return text.rsplit("-", 1)[-1] if "-" in text else text


def _own_name(m: Mapping) -> str | None:
    """The run's name when the user gave one (the recorder defaults it to the id)."""
    name = m.get("name")
    if name in (None, "", m.get("id")):
        return None
    return short(str(name), VALUE_WIDTH + KEY_WIDTH)


def _params(m: Mapping, section: str) -> dict:
    """One run's params of `section`, flattened; the user params also hold the run's seed
    (set with `start_run(seed=...)`, beside the params rather than in them)."""
    value = m.get(section)
    flat = flatten(value if isinstance(value, Mapping) else {})
    if section == "params" and "seed" not in flat:
        flat["seed"] = m.get("seed")
    return flat


def differing_keys(manifests: Sequence[Mapping]) -> tuple[str, list[str]]:
    """Which params name the runs: `("params", keys)` when user params (or seeds) differ,
    else `("auto_params", keys)`, else `("", [])`. Keys are flattened
    (`optimizer.learning_rate`)."""
    if len(manifests) < 2:
        return "", []
    for section in ("params", "auto_params"):
        keys = differing([_params(m, section) for m in manifests])
        if keys:
            return section, keys
    return "", []


def _display_keys(section: str, keys: list[str], maps: list[dict]) -> list[tuple[str, str]]:
    """(key, shown name) pairs: auto keys by their last part where that is unambiguous, and one
    key per name when several keys hold the same values in every run (a learning rate in
    `optimizer.learning_rate` and `optimizer.config.learning_rate`)."""
    if section != "auto_params":
        return [(k, k) for k in keys]
    by_name: dict[str, list[str]] = {}
    for key in keys:
        by_name.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    out = []
    for name, group in by_name.items():
        kept = []
        for key in sorted(group, key=lambda k: (k.count("."), k)):
            column = [m.get(key, MISSING) for m in maps]
            if not any(all(same_value(x, y) for x, y in
                           zip(column, [m.get(k, MISSING) for m in maps])) for k in kept):
                kept.append(key)
        out += [(k, name if len(kept) == 1 else k) for k in kept]
    return sorted(out, key=lambda pair: keys.index(pair[0]))


def _value(value) -> str:
    if value is MISSING or value is None:
        return MISSING
    return short(exact(value) if isinstance(value, (int, float)) or value is None
                 else value, VALUE_WIDTH)


def _join(parts: list[str], width: int) -> str:
    """As many `key=value` parts as fit in `width`, then `…` for the rest."""
    out = ""
    for i, part in enumerate(parts):
        candidate = f"{out} {part}".strip()
        rest = i < len(parts) - 1
        if len(candidate) + (2 if rest else 0) <= width:
            out = candidate
            continue
        if not out and not rest:
            return short(part, width)
        return (out or short(part, width - 2)) + " …"
    return out


def run_labels(manifests: Sequence[Mapping], *, width: int = LABEL_WIDTH) -> list[str]:
    """One short, unique, printable name per run, from what differs among the runs.

    Args:
        manifests: the compared runs' manifests, in display order.
        width: the longest label (the short id may follow a collided label within it).

    Example:
        >>> run_labels([{"id": "t-aaaa", "params": {"lr": 0.1, "bs": 32}},
        ...             {"id": "t-bbbb", "params": {"lr": 0.01, "bs": 32}}])
        ['lr=0.1', 'lr=0.01']
    """
    section, keys = differing_keys(manifests)
    maps = [_params(m, section) for m in manifests] if section else [{} for _ in manifests]
    shown = _display_keys(section, keys, maps) if keys else []
    labels = []
    for m in maps:
        parts = [f"{short(name, KEY_WIDTH)}={_value(m.get(key, MISSING))}" for key, name in shown]
        labels.append(_join(parts, width))
    return _disambiguate(manifests, labels, width)


def _disambiguate(manifests: Sequence[Mapping], labels: list[str], width: int) -> list[str]:
    """Empty or repeated labels get the run's own name, else its short id, else its id."""
    def repeated(values):
        return {v for v in values if values.count(v) > 1}

    out = list(labels)
    for pick in (_own_name, lambda m: short_id(m.get("id")), lambda m: printable(m.get("id"))):
        clash = repeated(out)
        if not clash and all(out):
            break
        for i, m in enumerate(manifests):
            if out[i] and out[i] not in clash:
                continue
            tag = pick(m)
            if not tag:
                continue
            base = labels[i]
            room = width - len(tag) - 3
            out[i] = f"{short(base, room)} · {tag}" if base and room >= 8 else tag
    return out
