"""mlrepro against MLflow autologging, Comet offline, W&B offline: step cost, start-up, record size.

Each repeat launches one process per tracker, interleaved (bare, mlrepro, mlflow,
comet, wandb, bare, mlrepro, ...), so slow phases of a shared machine hit every
tracker alike. Each process trains the tiny model (batch 16) and, in the first
`--resnet-repeats` repeats, ResNet-20 (batch 128) once each, logging every step.

Two views of the per-step cost, because one machine's noise is larger than some of
the differences (a no-op callback measured 0.7-1.17x bare here):
- hooks: time spent inside the tracker's own Keras hooks per measured step
  (`hook_timing.py`; median over repeats). The mlrepro target is judged on this.
- end to end: mean step time of a run; ratio = min over repeats of the tracker /
  min over repeats of bare; added = the difference of those minima.
Start-up = the tracker's set-up before `fit` (its `init`/experiment/callback
construction) + its extra time from the `fit` call to the first step, over bare's
median. Record = bytes the tracker left on disk for the run.

Run: `python benchmarks/peers.py [--quick] [--repeats N] [--trackers bare,mlrepro,...]`
(needs the peers installed: `make bench` uses a separate venv, .venv-bench).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import table  # noqa: E402
import trackers  # noqa: E402

ALL = ("bare", "mlrepro", "mlflow", "comet", "wandb")
TINY, RESNET = "tiny", "resnet20"
LABEL = {TINY: "tiny b16", RESNET: "resnet20 b128"}
STEP_RATIO_TARGET = 0.10   # mlrepro's added cost per step <= 1/10 of the cheapest peer's
STARTUP_TARGET_S = 0.5
WORKER_TIMEOUT_S = 900
OFFLINE_ENV = {
    # Every tracker offline, no telemetry; any stray connection fails at once on a closed port.
    "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "MLFLOW_ALLOW_FILE_STORE": "true",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "", "no_proxy": "", "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONHASHSEED": "0",
}


def available(names) -> tuple[list[str], dict[str, str]]:
    """The trackers importable by this interpreter, and why the others are skipped."""
    ok, skipped = [], {}
    for name in names:
        module = trackers.MODULES.get(name)
        if module and importlib.util.find_spec(module) is None:
            skipped[name] = f"{module} not installed here (use .venv-bench)"
        elif name == "mlrepro" and importlib.util.find_spec("mlrepro.keras") is None:
            skipped[name] = "mlrepro.keras (ReproCallback) does not exist yet"
        elif name == "mlflow" and importlib.util.find_spec("tensorboard") is None:
            skipped[name] = "mlflow autologging needs tensorboard installed"
        else:
            ok.append(name)
    return ok, skipped


def worker_env(base: str) -> dict:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = os.path.join(base, "wandb-home", var.lower())
    env["MLREPRO_SPOOL"] = os.path.join(base, "mlrepro-spool")
    env["MLREPRO_CACHE"] = os.path.join(base, "mlrepro-cache")
    env["COMET_OFFLINE_DIRECTORY"] = os.path.join(base, "comet-fallback")
    for var in ("MLREPRO_STORE", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "WANDB_RUN_ID",
                "COMET_API_KEY"):
        env.pop(var, None)
    return env


def launch(name: str, workloads: list[str], base: str, args) -> dict:
    """Run one worker process; its JSON result, or an `error` entry."""
    workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=base)
    out = os.path.join(base, f"{os.path.basename(workdir)}.json")
    cmd = [sys.executable, os.path.join(HERE, "peer_worker.py"), "--tracker", name,
           "--workdir", workdir, "--out", out, "--seed", str(args.seed),
           "--mlflow-backend", args.mlflow_backend]
    if args.with_models:
        cmd.append("--with-models")
    for w in workloads:
        cmd += ["--workload", w]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=worker_env(base), cwd=base, capture_output=True,
                              text=True, timeout=WORKER_TIMEOUT_S)
        tail = (proc.stderr or "").strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        return {"tracker": name, "error": f"timed out after {WORKER_TIMEOUT_S} s", "workloads": []}
    try:
        with open(out, encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        result = {"tracker": name, "workloads": [],
                  "error": f"exit {proc.returncode}: " + " | ".join(tail)[-300:]}
    result["wall_s"] = time.perf_counter() - t0
    return result


def collect(names: list[str], args, log=print) -> list[dict]:
    """All worker results, repeats interleaved across trackers."""
    tiny = f"{TINY}:16:{args.tiny_steps}:{args.tiny_warmup}"
    resnet = f"{RESNET}:128:{args.resnet_steps}:{args.resnet_warmup}"
    results = []
    with tempfile.TemporaryDirectory(prefix="mlrepro-peers-") as base:
        for rep in range(args.repeats):
            workloads = [tiny] + ([resnet] if rep < args.resnet_repeats else [])
            for name in names:
                res = launch(name, workloads, base, args)
                res["repeat"] = rep
                results.append(res)
                steps = {w["workload"]: w.get("step_mean_ns") for w in res["workloads"]}
                shown = ", ".join(f"{k} {v / 1e3:.0f} us/step" for k, v in steps.items() if v)
                log(f"  peers: repeat {rep + 1}/{args.repeats} {name:8s} "
                    f"{res.get('wall_s', 0):5.1f} s  {shown or res.get('error', '')}")
    return results


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results: list[dict], names: list[str]) -> dict:
    """Per workload and tracker: the medians and minima the table shows."""
    out = {}
    for workload in (TINY, RESNET):
        per = {}
        for name in names:
            runs = [w for r in results if r["tracker"] == name
                    for w in r["workloads"] if w["workload"] == workload]
            errors = [r["error"] for r in results if r["tracker"] == name and r.get("error")]
            if not runs:
                if errors:
                    per[name] = {"error": errors[0]}
                continue
            steps = [w["step_mean_ns"] / 1e3 for w in runs if w.get("step_mean_ns")]
            # Per step: batch hooks over the measured steps, plus the work a tracker defers
            # to the epoch end (e.g. buffered writes) spread over all the epoch's steps.
            batch = [w["hook_ns"].get("batch", 0) / 1e3 / w["measured_steps"]
                     for w in runs if w.get("measured_steps")]
            epoch = [w["hook_ns"].get("epoch_end", 0) / 1e3 / w["steps"]
                     for w in runs if w.get("measured_steps")]
            hooks = [b + e for b, e in zip(batch, epoch)]
            per[name] = {
                "repeats": len(runs),
                "step_us_min": min(steps) if steps else None,
                "step_us_median": _median(steps),
                "step_us_all": [round(s, 1) for s in steps],
                "step_median_us": _median([w["step_median_ns"] / 1e3 for w in runs
                                           if w.get("step_median_ns")]),
                "hook_us": _median(hooks),
                "hook_batch_us": _median(batch),
                "hook_epoch_end_us": _median(epoch),
                "setup_s": _median([w["setup_ns"] / 1e9 for w in runs]),
                "first_step_s": _median([w["fit_to_first_step_ns"] / 1e9 for w in runs]),
                "to_callbacks_s": _median([w["fit_to_callbacks_ns"] / 1e9 for w in runs]),
                "begin_hooks_s": _median([w["hook_ns"].get("begin", 0) / 1e9 for w in runs]),
                "finish_s": _median([w["finish_ns"] / 1e9 for w in runs]),
                "train_end_hooks_s": _median([w["hook_ns"].get("train_end", 0) / 1e9
                                              for w in runs]),
                "record_bytes": _median([w["record_bytes"] for w in runs]),
                "import_s": _median([r.get("import_ns", 0) / 1e9 for r in results
                                     if r["tracker"] == name and r["workloads"]]),
                "callbacks": runs[0].get("callbacks", []),
                "version": next((r.get("version") for r in results if r["tracker"] == name), "-"),
                "errors": errors,
            }
        bare = per.get("bare", {})
        for name, s in per.items():
            if "error" in s or not bare or "error" in bare or s.get("step_us_min") is None:
                continue
            s["ratio"] = s["step_us_min"] / bare["step_us_min"]
            s["added_us"] = s["step_us_min"] - bare["step_us_min"]
            s["startup_s"] = s["setup_s"] + s["first_step_s"] - bare["first_step_s"]
            s["startup_own_s"] = (s["setup_s"] + s["begin_hooks_s"]
                                  + max(0.0, s["to_callbacks_s"] - bare["to_callbacks_s"]))
        out[workload] = per
    return out


def _us(v) -> str:
    return "-" if v is None else f"{v:.1f}" if abs(v) < 100 else f"{v:,.0f}"


def _kb(n) -> str:
    return "-" if n is None else f"{n / 1024:,.0f} KiB" if n < 10 << 20 else f"{n / 2**20:,.1f} MiB"


def rows(summary: dict, skipped: dict[str, str]) -> list[table.Row]:
    """The lines this benchmark adds to the one results table."""
    out = []
    for workload, per in summary.items():
        label = LABEL[workload]
        for name, s in per.items():
            if "error" in s:
                out.append(table.Row(f"{label}: {name}", "failed: " + s["error"][:60]))
                continue
            failed = f" [{len(s['errors'])} failed]" if s.get("errors") else ""
            if name == "bare":
                out.append(table.Row(f"{label}: step, bare", f"{_us(s['step_us_min'])} us{failed}",
                                     "1.00x"))
                continue
            if "ratio" not in s:  # no bare to compare with
                out.append(table.Row(f"{label}: step, {name}",
                                     f"{_us(s['step_us_min'])} us (hooks {_us(s['hook_us'])} us)"
                                     f"{failed}"))
                continue
            value = (f"{s['step_us_min']:,.0f} us ({s['added_us']:+,.0f}; "
                     f"hooks {_us(s['hook_us'])} us){failed}")
            out.append(table.Row(f"{label}: step, {name}", value, f"{s['ratio']:.2f}x bare"))
        peers = {n: s for n, s in per.items()
                 if n in trackers.PEERS and "error" not in s and s["hook_us"] is not None}
        mine = per.get("mlrepro")
        if peers and mine and "error" not in mine and mine["hook_us"] is not None:
            cheapest = min(peers, key=lambda n: peers[n]["hook_us"])
            theirs = peers[cheapest]["hook_us"]
            ratio = mine["hook_us"] / theirs if theirs else None
            out.append(table.Row(
                f"{label}: mlrepro hooks / cheapest peer ({cheapest})",
                f"{_us(mine['hook_us'])} / {_us(peers[cheapest]['hook_us'])} us",
                "-" if ratio is None else f"{ratio:.3f}", f"<= {STEP_RATIO_TARGET:.2f}",
                None if ratio is None else ratio <= STEP_RATIO_TARGET))
        peers = {n: s for n, s in peers.items() if "added_us" in s}
        if peers and mine and "added_us" in mine:
            cheapest_e2e = min(peers, key=lambda n: peers[n]["added_us"])
            peer_added = peers[cheapest_e2e]["added_us"]
            e2e = mine["added_us"] / peer_added if peer_added > 0 else None
            out.append(table.Row(
                f"{label}: mlrepro added / cheapest peer added, end to end ({cheapest_e2e})",
                f"{mine['added_us']:,.0f} / {peer_added:,.0f} us",
                "-" if e2e is None else f"{e2e:.2f}", "(noisy; info)"))
        if workload == TINY:
            for name, s in per.items():
                if name == "bare" or "error" in s or "startup_s" not in s:
                    continue
                target = f"<= {STARTUP_TARGET_S} s" if name == "mlrepro" else "-"
                ok = s["startup_s"] <= STARTUP_TARGET_S if name == "mlrepro" else None
                out.append(table.Row(f"start-up (fit -> first step): {name}",
                                     f"{s['startup_s']:.2f} s (own {s['startup_own_s']:.2f} s)",
                                     "", target, ok))
        for name, s in per.items():
            if name != "bare" and "error" not in s:
                out.append(table.Row(f"{label}: record per run, {name}", _kb(s["record_bytes"])))
    for name, why in skipped.items():
        out.append(table.Row(f"peers: {name}", "skipped: " + why))
    return out


def details(summary: dict, names: list[str], args) -> str:
    """Markdown: per-tracker figures and exactly what each tracker logged."""
    lines = ["### Trackers, per workload", "",
             f"Repeats: {args.repeats} (ResNet-20 in the first {args.resnet_repeats}); tiny: "
             f"{args.tiny_steps} measured steps after {args.tiny_warmup} warm-up, batch 16; "
             f"ResNet-20: {args.resnet_steps} measured steps after {args.resnet_warmup} warm-up, "
             f"batch 128. MLflow store: {args.mlflow_backend}. Model saving: "
             + ("on (mlrepro checkpoints + exports, MLflow log_models + checkpoint)."
                if args.with_models else "off."), ""]
    head = ("| workload | tracker | version | step min us | step median us | all repeats us | "
            "vs bare (min) | hooks us/step (batch + epoch end) | import s | set-up s | "
            "fit->1st step s | start-up s | finish s | record |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for workload, per in summary.items():
        for name, s in per.items():
            if "error" in s:
                lines.append(f"| {workload} | {name} | | failed: {s['error']} |" + " |" * 10)
                continue

            def f(key, fmt):
                v = s.get(key)
                return "-" if v is None else format(v, fmt)
            lines.append(
                f"| {workload} | {name} | {s['version']} | {f('step_us_min', ',.0f')} | "
                f"{f('step_us_median', ',.0f')} | "
                f"{', '.join(f'{v:,.0f}' for v in s['step_us_all'])} | "
                f"{f('ratio', '.2f')} | {_us(s.get('hook_us'))} ({_us(s.get('hook_batch_us'))} + "
                f"{_us(s.get('hook_epoch_end_us'))}) | {f('import_s', '.2f')} | "
                f"{f('setup_s', '.2f')} | {f('first_step_s', '.2f')} | {f('startup_s', '.2f')} | "
                f"{f('finish_s', '.2f')} | {_kb(s['record_bytes'])} |")
    lines += ["", "### What each tracker logs", ""]
    for name in names:
        cls = trackers.TRACKERS[name]
        lines.append(f"- **{name}**: {cls.logs}")
    seen = {n: s.get("callbacks") for per in summary.values() for n, s in per.items()
            if s.get("callbacks")}
    if seen:
        lines += ["", "Callbacks found in `fit` (hooks timed): " + "; ".join(
            f"{n}: {', '.join(c.rsplit('.', 1)[-1] for c in cbs)}" for n, cbs in seen.items())]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("peers")
    g.add_argument("--trackers", default=",".join(ALL), help="comma list from " + ",".join(ALL))
    g.add_argument("--repeats", type=int, default=None, help="processes per tracker (default 5)")
    g.add_argument("--resnet-repeats", type=int, default=None, help="repeats with ResNet-20 (3)")
    g.add_argument("--tiny-steps", type=int, default=None, help="measured steps (default 500)")
    g.add_argument("--tiny-warmup", type=int, default=None, help="warm-up steps (default 50)")
    g.add_argument("--resnet-steps", type=int, default=None, help="measured steps (default 20)")
    g.add_argument("--resnet-warmup", type=int, default=None, help="warm-up steps (default 3)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mlflow-backend", default="sqlite", choices=trackers.MLFLOW_BACKENDS,
                   help="MLflow tracking store in the run dir (sqlite: MLflow 3's default)")
    g.add_argument("--with-models", action="store_true",
                   help="mlrepro checkpoints+exports and MLflow log_models+checkpoint on")


FULL = {"repeats": 5, "resnet_repeats": 3, "tiny_steps": 500, "tiny_warmup": 50,
        "resnet_steps": 20, "resnet_warmup": 3}
QUICK = {"repeats": 2, "resnet_repeats": 1, "tiny_steps": 200, "tiny_warmup": 20,
         "resnet_steps": 4, "resnet_warmup": 2}


def resolve(args) -> None:
    """Fill unset sizes from the full or the quick preset."""
    preset = QUICK if getattr(args, "quick", False) else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def run(args, log=print) -> tuple[list[table.Row], str, dict]:
    """Rows for the results table, a markdown details section, and the raw summary."""
    resolve(args)
    wanted = [n.strip() for n in args.trackers.split(",") if n.strip()]
    bad = [n for n in wanted if n not in ALL]
    if bad:
        raise SystemExit(f"--trackers: unknown {bad}; choose from {','.join(ALL)}")
    if "bare" not in wanted:
        wanted.insert(0, "bare")
    names, skipped = available(wanted)
    results = collect(names, args, log=log)
    summary = summarize(results, names)
    return rows(summary, skipped), details(summary, names, args), {"summary": summary,
                                                                     "skipped": skipped}


def main(argv=None) -> int:
    return table.script_main(run, add_arguments, __doc__, "small sizes, to check the harness", argv)


if __name__ == "__main__":
    sys.exit(main())
