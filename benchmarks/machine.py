"""What the benchmarks ran on: CPU, cores, memory, OS, Python, TensorFlow and peer versions, load.

Read without importing TensorFlow or any tracker (package metadata only), so that
describing the machine costs nothing and cannot fail a benchmark.

Example:
    >>> print(markdown(describe()))
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "mlflow", "comet_ml", "wandb",
            "tensorboard", "mlrepro")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(repo: str) -> str:
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}{' (uncommitted changes)' if dirty else ''}" if head else "-"
    except (OSError, subprocess.SubprocessError):
        return "-"


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def describe(repo: str | None = None) -> dict:
    """The machine and software versions, as plain values."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {p: v for p in PACKAGES if (v := _version(p))}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({sys.executable})",
        "tensorflow": versions.get("tensorflow-cpu") or versions.get("tensorflow") or "-",
        "versions": versions,
        "commit": _git(repo) if repo else "-",
        "load_at_start": load(),
    }


def markdown(info: dict) -> str:
    """A short markdown list of the machine facts."""
    mem = info["memory_gib"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        f"- Date: {info['date']}",
        f"- CPU: {info['cpu']}; {info['cores']} cores ({info['usable_cores']} usable)",
        f"- Memory: {mem:.1f} GiB" if mem else "- Memory: unknown",
        f"- OS: {info['os']}",
        f"- Python: {info['python']}",
        f"- TensorFlow: {info['tensorflow']}",
        f"- Packages: {versions}",
        f"- mlrepro commit: {info['commit']}",
        f"- Load average (1/5/15 min) at start: {info['load_at_start']}"
        + (f"; at end: {info['load_at_end']}" if info.get("load_at_end") else ""),
    ]
    return "\n".join(lines)
