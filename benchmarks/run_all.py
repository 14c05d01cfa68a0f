"""Run every benchmark, print one table of medians and ratios, and write benchmarks/RESULTS.md.

What runs, in order (each can be left out with --skip):
- store: `store_bench.py` (logging cost, read-back, listing 10,000 runs), in a subprocess;
- s3index: `s3_index_bench.py` (listing 1,000 / 3,000 / 10,000 runs cold from an S3 store on
  moto's server: time and requests, the 100,000-run projection), in a subprocess;
- callbacks: `callback_overhead.py`, when it exists, in a subprocess;
- checkpoints: `checkpoint_bench.py` (ResNet-20: SIGTERM to checkpoint written and to exit;
  per-step cost of `checkpoint_every="N steps"` against epoch checkpoints and bare `fit`),
  in a subprocess;
- peers: `peers.py`, mlrepro against MLflow autologging, Comet offline and W&B offline
  (one process per tracker per repeat, interleaved; needs the bench venv);
- fingerprint: `fingerprint_bench.py`, data fingerprinting against md5sum/sha256sum and
  the raw read bandwidth, cold and warm.
RESULTS.md records the machine (CPU, cores, memory, Python, TensorFlow and peer
versions, load) and the date beside the table, so numbers from two machines are never
compared by accident.

Run: `make bench`, or `.venv-bench/bin/python benchmarks/run_all.py [--quick] [--skip peers]`.
`--quick` shrinks every size to check the harness in a few minutes; its numbers are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import fingerprint_bench  # noqa: E402
import machine  # noqa: E402
import peers  # noqa: E402
import table  # noqa: E402

PARTS = ("store", "s3index", "callbacks", "checkpoints", "peers", "fingerprint")
STORE_QUICK = {"points": 100_000, "runs": 1_000}
SUBPROCESS_TIMEOUT_S = 1800


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_table(text: str, prefix: str) -> list[table.Row] | None:
    """Rows from a script's printed table (a `benchmark ...` header, columns 2+ spaces apart)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.split()[:1] == ["benchmark"]), None)
    if start is None:
        return None
    header = re.split(r"\s{2,}", lines[start].strip())
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        if set(line.strip()) <= set("- "):
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(header):
            continue
        named = dict(zip([h.lower() for h in header], cells))
        ok_text = named.get("ok", "-").lower()
        ok = True if ok_text in ("yes", "ok", "true") else False if ok_text in ("no", "false") \
            else None
        value = named.get("median") or named.get("value") or cells[1]
        out.append(table.Row(f"{prefix}: {cells[0]}", value, named.get("ratio", ""),
                             named.get("target", "-"), ok))
    return out or None


def parse_pipe_table(text: str, prefix: str) -> list[table.Row] | None:
    """Rows from a `a | b | c` table with a `-+-` rule under its header (callback_overhead.py).

    One row per line: named by its first cell (and batch), valued by its hook time per step
    when there is such a column, with the ratio of minima and the target when present.
    """
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if " | " in lines[i] and "-+-" in lines[i + 1]:
            header = [h.strip().lower() for h in lines[i].split("|")]
            break
    else:
        return None
    col = {h: n for n, h in enumerate(header)}
    value_col = next((n for h, n in col.items() if "hook" in h and "us" in h), 1)
    out = []
    for line in lines[i + 2:]:
        if " | " not in line:
            break
        cells = [c.strip() for c in line.split("|")]
        if len(cells) != len(header):
            continue
        name = cells[0] + (f" b{cells[col['batch']]}" if "batch" in col else "")
        unit = " us/step in its hooks" if value_col != 1 else ""
        ratio = f"{cells[col['min ratio']]}x bare" if "min ratio" in col else ""
        out.append(table.Row(f"{prefix}: {name}", cells[value_col] + unit, ratio,
                             cells[col["target"]] if "target" in col else "-"))
    return out or None


def run_script(name: str, argv: list[str], prefix: str,
               python: str | None = None) -> tuple[list[table.Row], str]:
    """Run a benchmark script in a subprocess; its rows and its output for RESULTS.md."""
    path = os.path.join(HERE, name)
    cmd = [python or sys.executable, path, *argv]
    log(f"== {prefix}: {' '.join(shlex.quote(c) for c in cmd[1:])}")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                              cwd=REPO)
    except subprocess.TimeoutExpired:
        return [table.Row(f"{prefix}", f"timed out after {SUBPROCESS_TIMEOUT_S} s")], ""
    seconds = time.perf_counter() - t0
    output = proc.stdout.strip()
    log(output)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-2:])[-200:]
        return [table.Row(prefix, f"failed (exit {proc.returncode}): {tail}")], \
            f"```\n{output}\n{proc.stderr.strip()[-3000:]}\n```\n"
    found = parse_table(output, prefix) or parse_pipe_table(output, prefix)
    if found is None:
        found = [table.Row(prefix, "see its output in RESULTS.md")]
    return found, f"`{name} {' '.join(argv)}` ({seconds:.0f} s):\n\n```\n{output}\n```\n"


def supports_quick(name: str) -> bool:
    try:
        with open(os.path.join(HERE, name), encoding="utf-8") as fh:
            return '"--quick"' in fh.read()
    except OSError:
        return False


def results_markdown(info: dict, rows: list[table.Row], sections: list[tuple[str, str]],
                     args, command: str, seconds: float) -> str:
    mode = "quick (harness check: sizes shrunk, numbers are NOT results)" if args.quick else "full"
    parts = [
        "# Benchmark results", "",
        "Written by `make bench` (`benchmarks/run_all.py`). One run, on the machine below; "
        "re-run on a quiet machine before quoting a number.", "",
        f"- Command: `{command}`",
        f"- Mode: {mode}; took {seconds / 60:.1f} min", "",
        "## Machine", "", machine.markdown(info), "",
        "## Results", "",
        "Medians over repeats unless the row says otherwise; `ratio` is against the row's "
        "reference (`x bare`: tracker step time over bare `fit`, ratio of minima over "
        "interleaved repeats; `raw`: over the raw read bandwidth).", "",
        table.markdown(rows), "",
        "Targets (issue 9): mlrepro's added cost per step <= 1/10 of the cheapest peer's "
        "(judged on time inside each tracker's own hooks; the end-to-end difference is shown "
        "beside it but is within the noise of a shared machine); start-up (fit call to first "
        "step) <= 0.5 s; fingerprinting cold >= 80 % of the raw read bandwidth; warm (digest "
        "cache) < 50 ms. Store targets are issue 2's; S3 index targets issue 20's.", "",
        "## How it was measured", "",
        "- Per step: each tracker runs in its own process (MLflow autologging patches `fit` "
        "process-wide), launched interleaved: bare, mlrepro, mlflow, comet, wandb, bare, ... "
        "Step time is the mean interval between successive batch starts after the warm-up "
        "steps (timestamped by a callback that overrides only `on_train_batch_begin`, so "
        "Keras' async batch-end dispatch is unchanged). Hook time is measured inside every "
        "non-default hook of every callback the tracker put into `fit`, including ones it "
        "injected itself.",
        "- Start-up: the tracker's set-up before `fit` (e.g. `wandb.init`, `OfflineExperiment`, "
        "`mlflow.start_run` + `autolog`, building `ReproCallback`) plus its extra time from the "
        "`fit` call to the first step over bare's median. `own` = set-up + its begin hooks + "
        "any time its `fit` patch adds before the callbacks start. Imports are timed apart "
        "(details table). The tiny model's fit is the first in each process, so its start-up "
        "is the cold one.",
        "- Record: bytes of every file the tracker left in the run's directory (MLflow: "
        "growth of its store), for one run.",
        "- All trackers offline: W&B `mode=offline`, Comet `OfflineExperiment`, MLflow with "
        "a local store; telemetry off; proxies point at a closed local port so any stray "
        "connection fails at once.", "",
    ]
    for title, body in sections:
        if body:
            parts += [f"## {title}", "", body.rstrip(), ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes everywhere: checks the harness in minutes")
    parser.add_argument("--skip", default="", help="comma list from " + ",".join(PARTS))
    parser.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"),
                        help="where to write the markdown results ('' for nowhere)")
    parser.add_argument("--json", help="also write every raw measurement here")
    parser.add_argument("--points", type=int, help="store_bench --points")
    parser.add_argument("--runs", type=int, help="store_bench --runs")
    peers.add_arguments(parser)
    fingerprint_bench.add_arguments(parser)
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(PARTS):
        parser.error(f"--skip: unknown {sorted(skip - set(PARTS))}; choose from {','.join(PARTS)}")
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, REPO)
                                                 if sys.executable.startswith(REPO)
                                                 else sys.executable,
                                                 "benchmarks/run_all.py", *(argv or sys.argv[1:])])
    info = machine.describe(REPO)
    t0 = time.perf_counter()
    rows: list[table.Row] = []
    sections: dict[str, str] = {}
    raw: dict = {"machine": info}

    if "store" not in skip:
        points = args.points or (STORE_QUICK["points"] if args.quick else None)
        runs = args.runs or (STORE_QUICK["runs"] if args.quick else None)
        store_args = (["--points", str(points)] if points else []) + \
            (["--runs", str(runs)] if runs else [])
        found, text = run_script("store_bench.py", store_args, "store")
        rows += found
        sections["Store benchmark output"] = text
    if "s3index" not in skip:
        # moto and boto3 live in the main lane's venv (the bench venv holds the peers).
        main_python = os.path.join(REPO, ".venv", "bin", "python")
        found, text = run_script("s3_index_bench.py", ["--quick"] if args.quick else [],
                                 "s3 index", main_python if os.path.exists(main_python)
                                 else None)
        rows += found
        sections["S3 index benchmark output"] = text
    if "callbacks" not in skip:
        if os.path.exists(os.path.join(HERE, "callback_overhead.py")):
            extra = ["--quick"] if args.quick and supports_quick("callback_overhead.py") else []
            found, text = run_script("callback_overhead.py", extra, "callback")
            rows += found
            sections["Callback overhead output"] = text
        else:
            rows.append(table.Row("callback overhead", "skipped: callback_overhead.py not found"))
    if "checkpoints" not in skip:
        found, text = run_script("checkpoint_bench.py", ["--quick"] if args.quick else [],
                                 "checkpoints")
        rows += found
        sections["Checkpoint benchmark output"] = text
    if "peers" not in skip:
        log("== peers (one process per tracker per repeat, interleaved)")
        found, text, raw["peers"] = peers.run(args, log=log)
        rows += found
        sections["Peers in detail"] = text
    if "fingerprint" not in skip:
        log("== fingerprint")
        found, text, raw["fingerprint"] = fingerprint_bench.run(args, log=log)
        rows += found
        sections["Fingerprinting in detail"] = text

    seconds = time.perf_counter() - t0
    info["load_at_end"] = machine.load()
    print()
    print(table.render(rows))
    print(f"\n({'quick harness check; ' if args.quick else ''}{seconds / 60:.1f} min; "
          f"load average at start {info['load_at_start']}, at end {info['load_at_end']})")
    if args.results:
        with open(args.results, "w", encoding="utf-8") as fh:
            order = ("Peers in detail", "Fingerprinting in detail", "Store benchmark output",
                     "S3 index benchmark output", "Callback overhead output",
                     "Checkpoint benchmark output")
            fh.write(results_markdown(info, rows, [(k, sections[k]) for k in order
                                                   if k in sections], args, command, seconds))
        print(f"wrote {os.path.relpath(args.results)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(raw, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
