"""Text views of runs for people: `mlrepro show` and the value formatting every view shares
(the `runs` table is `listing`). Pure formatting."""

from __future__ import annotations

import json
import math
import struct
import unicodedata

from mlrepro.compare.sections import flatten


def printable(text) -> str:
    """`text` safe to print: control characters, line separators and lone surrogates as
    backslash escapes.

    A run name, param or metric name may hold any string; the table must keep its lines and
    columns, and a terminal must not obey an escape sequence hidden in one.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c for c in text)


def _seconds(ts) -> float | None:
    """A timestamp as float seconds, or None for a missing or garbage one (hand-edited)."""
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return None
    return float(ts)


def when(ts) -> str:
    ts = _seconds(ts)
    if not ts:
        return "-"
    import time

    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return "-"


def duration(start, end, now=None) -> str:
    start, end = _seconds(start), _seconds(end)
    if not start:
        return "-"
    import time

    seconds = float(end or now or time.time()) - start
    if not seconds >= 0 or seconds > 1e12:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _dict(value) -> dict:
    """`value` if it is a dict, else {} (a hand-edited record may hold anything)."""
    return value if isinstance(value, dict) else {}


def end_of(manifest: dict, status: str | None = None):
    """When a run stopped: its end time, or for a run that ended without one (crashed,
    killed by SIGKILL) its last heartbeat; None while it runs."""
    end = manifest.get("end_time")
    if end:
        return end
    status = status or manifest.get("status")
    return None if status == "running" else manifest.get("heartbeat")


def number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:g}"
    return str(value)


def as_float32(value: float) -> float | None:
    """`value` through IEEE float32 and back, or None when it does not fit in one."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except (OverflowError, struct.error):
        return None


def exact(value) -> str:
    """A recorded value in full: floats as the shortest text that reads back the same, and a
    float that is exactly a float32 (a Keras learning rate, 0.009999999776482582) as the
    shortest text that reads back as that float32 (0.01).

    Example:
        >>> exact(0.009999999776482582), exact(0.01), exact(3.0)
        ('0.01', '0.01', '3.0')
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        text = repr(value)
        if math.isfinite(value) and as_float32(value) == value:
            for digits in range(1, 10):
                candidate = f"{value:.{digits}g}"
                if not any(c in candidate for c in ".en"):
                    candidate += ".0"
                if as_float32(float(candidate)) == value:
                    return candidate if len(candidate) < len(text) else text
        return text
    if isinstance(value, int):
        return str(value)
    return short(value, 60)


def short(value, width: int = 40) -> str:
    text = printable(value) if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                      default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


LABEL = 12  # the width of `show`'s labels ("fingerprint" and a space)
KEY_WIDTH = 32


def _kv_block(title: str, mapping: dict, width: int = 100, cut: list | None = None,
              indent: str = "  ") -> list[str]:
    """`title:` then one aligned `key  value` line per item; `cut` gets True when a key or
    value was shortened."""
    lines = [f"{title}:"]
    if not mapping:
        lines.append(indent + "(none)")
        return lines
    keys = {key: short(str(key), KEY_WIDTH) for key in mapping}
    key_width = max(len(k) for k in keys.values())
    room = max(width - len(indent) - key_width - 2, 20)
    for key in sorted(mapping, key=str):
        value = mapping[key]
        text = exact(value) if isinstance(value, (int, float)) and not isinstance(
            value, bool) else short(value, room)
        if cut is not None and (keys[key] != printable(key) or text.endswith("…")):
            cut.append(True)
        lines.append(f"{indent}{keys[key].ljust(key_width)}  {text}".rstrip())
    return lines


def _wrapped(head: str, items: list[str], width: int, sep: str = ", ") -> list[str]:
    """`head` then the items, wrapped at `width` with continuation lines indented."""
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (sep if i < len(items) - 1 else "")
        if len(line) + len(piece.rstrip()) > width and line.strip() != head.strip() \
                and line.strip():
            lines.append(line.rstrip())
            line = " " * 4 + piece
        else:
            line += piece
    lines.append(line.rstrip())
    return lines


def fit_lines(lines: list[str], width: int) -> tuple[list[str], bool]:
    """Every line escaped and cut to `width` (an ellipsis marks the cut), and whether any was
    cut. Escaping an escaped line changes nothing, so every field is safe however built."""
    out, cut = [], False
    for line in map(printable, lines):
        if len(line) > width:
            out.append(line[: max(width - 1, 1)] + "…")
            cut = True
        else:
            out.append(line)
    return out, cut


def resume_lines(m: dict) -> list[tuple[str, str]]:
    """(label, text) lines for `show`: how a restart resumes, and each preemption's save."""
    p = printable
    out = []
    resume = _dict(m.get("resume"))
    if resume.get("granularity"):
        text = ("exact" if resume.get("exact") else "not exact") + \
            f", at the {p(resume['granularity'])}"
        restored = _dict(resume.get("restored"))
        if restored:
            text += (f"; restored {p(restored.get('checkpoint'))} (step "
                     f"{p(restored.get('global_step'))})")
            if resume.get("lost_steps") is not None:
                text += f", {p(resume['lost_steps'])} steps trained again"
        out.append(("resume", text))
        if resume.get("why_not_step"):
            out.append(("", f"not at the step: {p(resume['why_not_step'])}"))
    attempts = m.get("attempts") if isinstance(m.get("attempts"), list) else []
    for a in attempts:
        note = _dict(_dict(a).get("preemption"))
        if not note:
            continue
        if note.get("checkpoint"):
            text = (f"attempt {p(a.get('attempt'))}: SIGTERM, saved {p(note['checkpoint'])} "
                    f"at step {p(note.get('step'))} in {number(note.get('save_seconds'))} s")
        else:
            text = f"attempt {p(a.get('attempt'))}: SIGTERM, {p(note.get('reason'))}"
        out.append(("preempted", text))
    return out


def run_text(manifest: dict, status: str, events: list[dict] | None = None,
             points=None, width: int = 100) -> str:
    """Everything in a record, grouped the way a person reads it, fitted to `width`.

    Every value is escaped (`printable`); a value too long for the line is cut with an
    ellipsis, and a last line points at `--json` for the whole record.
    """
    m = manifest
    p = printable

    def field(label: str, value) -> str:
        return f"{label:<{LABEL}}{value}"

    error = str(m.get("error") or "").strip()
    out = [field("run", p(m.get("id"))),
           field("project", p(m.get("project"))),
           field("name", p(m.get("name"))),
           field("status", p(status) + (f"  ({p(error.splitlines()[-1])})" if error else "")),
           field("started", when(m.get("start_time"))),
           field("ended", when(m.get("end_time"))),
           field("duration", duration(m.get("start_time"), end_of(m, status))),
           field("attempts", len(m["attempts"]) if isinstance(m.get("attempts"), list) else 0),
           field("fingerprint", p(m.get("fingerprint")))]
    parent = _dict(m.get("parent"))
    if parent:
        out.append(field("parent", f"{p(parent.get('kind'))} {p(parent.get('run'))}"))
    out += [field(label, text) for label, text in resume_lines(m)]
    out.append("")
    cut: list = []
    out += _kv_block("params", _dict(m.get("params")), width, cut)
    if _dict(m.get("auto_params")):
        out += _kv_block("auto-captured params", flatten(m["auto_params"]), width, cut)
    if _dict(m.get("tags")):
        out += _kv_block("tags", m["tags"], width, cut)
    det = _dict(m.get("determinism"))
    out.append(f"seed: {m.get('seed')}  deterministic: {det.get('deterministic', False)}"
               + (f"  applied: {', '.join(det.get('applied') or [])}" if det.get("applied")
                  else ""))
    if det.get("model_built_before_seed"):  # see mlrepro._keras.initial_state
        out += _wrapped("", ("initial state: the model was built before seeding; " + (
            "its initial weights are artifact initial_state (`mlrepro reproduce` restores them)"
            if det.get("initial_state") else "its initial weights were not seeded")).split(),
            width, sep=" ")
    if det.get("initial_state_restored_from"):
        out.append(f"initial state: restored from run {det['initial_state_restored_from']}")
    summary = m.get("metrics_summary") or {}
    out.append("metrics:")
    if not summary:
        out.append("  (none)")
    else:
        rows = []
        for name in sorted(summary):
            s = _dict(summary[name])
            rows.append([printable(name), number(s.get("last")), str(s.get("step")),
                         number(s.get("min")), number(s.get("max")), str(s.get("count"))])
        out += ["  " + line for line in table(["NAME", "LAST", "STEP", "MIN", "MAX", "POINTS"],
                                               rows).splitlines()]
    code = _dict(m.get("code"))
    out.append("code:")
    if code.get("git") is None and not code.get("commit"):
        out.append("  not a git checkout" + (f"; entry point {code.get('entry_point')}"
                                             if code.get("entry_point") else ""))
    else:
        out.append(f"  commit {code.get('commit')}  branch {code.get('branch')}  "
                   f"dirty {code.get('dirty')}")
        if code.get("remote"):
            out.append(f"  remote {code['remote']}")
        if code.get("patch"):
            out.append(f"  uncommitted patch {code['patch'][:12]} ({code.get('patch_size')} bytes)")
        out.append(f"  entry point {code.get('entry_point')}")
    if isinstance(code.get("argv"), list):
        out.append("  command " + printable(" ".join(map(str, code["argv"]))))
    data = _dict(m.get("data"))
    out.append("data:")
    if not data:
        out.append("  (none)")
    for name in sorted(data):
        d = _dict(data[name])
        source = f" {d['source']}" if d.get("source") else ""
        out.append(f"  {name}: {d.get('kind')}{source} digest "
                   f"{(d.get('digest') or '-')[:16]} size {d.get('size')}"
                   + (f" ({d['method']})" if d.get("method") else ""))
    arts = _dict(m.get("artifacts"))
    out.append("artifacts:")
    if not arts:
        out.append("  (none)")
    for name in sorted(arts):
        a = _dict(arts[name])
        digest = str(a.get("digest") or a.get("tree") or "-")
        kind = "" if a.get("kind") == name else f"  {p(a.get('kind'))}"
        out.append(f"  {p(name)}{kind}  {p(digest[:16])}  {p(a.get('size'))} bytes")
    rt = _dict(m.get("runtime"))
    out += _wrapped("runtime: ", [f"{p(k)}={short(v, 60)}" for k, v in sorted(rt.items())
                                  if v not in (None, "", [], {})], width)
    env = _dict(m.get("environment"))
    if env:
        fw = _dict(env.get("frameworks"))
        cpu = _dict(env.get("cpu"))
        out.append("environment:")
        out.append(f"  python {env.get('python')} on {env.get('platform')}")
        out.append(f"  cpu {cpu.get('model')} x{cpu.get('cores')}  memory "
                   f"{round((env.get('memory_bytes') or 0) / 2**30, 1)} GiB  accelerators "
                   f"{', '.join(env.get('accelerators') or [])}")
        if fw:
            out += _wrapped("  frameworks ", [f"{p(k)} {p(v)}" for k, v in sorted(fw.items())],
                            width)
        out.append(f"  packages {len(env.get('packages') or {})} recorded; variables "
                   f"{len(env.get('variables') or {})} recorded (allow-listed, redacted)")
    if events:
        warnings_ = [e for e in events if isinstance(e, dict) and e.get("kind") == "warning"]
        out.append(f"events: {len(events)} ({len(warnings_)} warnings)")
        for e in warnings_[-5:]:
            out.append(f"  {when(e.get('time'))} {short(e.get('message', ''), 120)}")
    out, cut_lines = fit_lines(out, width)
    if cut or cut_lines:
        out.append("(long values cut to fit; --json prints them whole)")
    return "\n".join(out)
