"""Environment capture: Python, packages, OS, hardware, frameworks, allow-listed variables.

Variables are an allow-list (framework, CUDA, SageMaker and mlrepro prefixes),
then redacted; nothing outside the list is ever read into a record.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

from mlrepro.capture.redact import redact_environ, redact_text

ENV_PREFIXES = ("MLREPRO_", "SM_", "SAGEMAKER_", "TF_", "CUDA_", "NVIDIA_", "XLA_", "KERAS_",
                "CUDNN_", "NCCL_", "OMP_", "MKL_", "OPENBLAS_", "HOROVOD_", "OMPI_COMM_WORLD_",
                "PMI_", "TRAINING_JOB_")
ENV_NAMES = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "LD_PRELOAD", "AWS_REGION",
             "AWS_DEFAULT_REGION", "DLAMI_VERSION")
# Fields of the environment that decide whether two runs can give the same numbers.
FINGERPRINT_FIELDS = ("python", "packages", "frameworks", "accelerators", "machine")


def _name_version(dist) -> tuple[str | None, str | None]:
    """Name and Version from the metadata's header lines only.

    `dist.metadata[...]` and `dist.version` run the email parser over the whole file
    (long descriptions included): ~2 ms a package, 0.3-0.6 s for a TF venv at every run
    start. The header ends at the first blank line.
    """
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    except Exception:  # noqa: BLE001
        return None, None
    name = version = None
    for line in text.splitlines():
        if not line:
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version


def _packages() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_version(dist)
        if not name:
            continue
        version = version or "?"
        try:
            direct = dist.read_text("direct_url.json")
        except Exception:  # noqa: BLE001
            direct = None
        if direct and '"url"' in direct:
            import json

            try:
                url = json.loads(direct).get("url", "")
                if url and not url.startswith("file:"):
                    version += " @ " + redact_text(url)
            except ValueError:
                pass
        out[name.lower().replace("_", "-")] = version
    return dict(sorted(out.items()))


def _cpu() -> dict:
    info = {"cores": os.cpu_count(), "model": platform.processor() or None}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return info


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[dict]:
    """NVIDIA GPUs with driver and memory, from nvidia-smi when it exists."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,uuid",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": parts[2]})
    return gpus


# Frameworks by import name, with the distributions that install each (the first found wins).
FRAMEWORKS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos",
                   "tensorflow-intel"),
    "keras": ("keras",), "tf_keras": ("tf-keras",), "jax": ("jax",), "torch": ("torch",),
    "numpy": ("numpy",), "horovod": ("horovod",),
}


def _installed_version(distributions, packages: dict | None) -> str | None:
    for dist in distributions:
        if packages:
            if dist in packages:
                return packages[dist].split(" @ ", 1)[0]
            continue
        from importlib import metadata

        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _frameworks(packages: dict | None = None) -> dict:
    """Versions of the installed frameworks, imported or not (never imports one).

    What only an imported framework can say (TensorFlow's CUDA build, the Keras
    backend) is added by `framework_details`, once the framework is imported.
    """
    out: dict = {}
    for name, distributions in FRAMEWORKS.items():
        version = _installed_version(distributions, packages)
        if version is None and name in sys.modules:  # imported from a path, not installed
            version = getattr(sys.modules[name], "__version__", None)
        if version is not None:
            out[name] = version
    out.update(framework_details())
    return out


def framework_details() -> dict:
    """What the frameworks imported so far say about themselves (CUDA build, Keras backend)."""
    out: dict = {}
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            build = tf.sysconfig.get_build_info()
            out["cuda"] = build.get("cuda_version")
            out["cudnn"] = build.get("cudnn_version")
            out["tf_built_with_cuda"] = bool(build.get("is_cuda_build"))
        except Exception:  # noqa: BLE001
            pass
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            out["keras_backend"] = keras.backend.backend()
        except Exception:  # noqa: BLE001
            pass
    return out


def capture_environment(environ=None, *, include_packages: bool = True) -> dict:
    """Everything about the machine and software a run depends on, secrets redacted."""
    environ = os.environ if environ is None else environ
    uname = platform.uname()
    gpus = _gpus()
    packages = _packages() if include_packages else {}
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "os": uname.system,
        "os_release": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
        "cpu": _cpu(),
        "memory_bytes": _memory_bytes(),
        "gpus": gpus,
        "accelerators": [g["name"] for g in gpus] or ["cpu"],
        "frameworks": _frameworks(packages),
        "packages": packages,
        "variables": redact_environ(environ, ENV_PREFIXES, ENV_NAMES),
    }


def refresh_frameworks(env: dict) -> dict | None:
    """`env` with the details of frameworks imported since it was captured, or None if none.

    A run calls this as it writes its record, so a framework imported after
    `start_run` (the usual order in a script) is described like one imported before.
    """
    frameworks = env.get("frameworks")
    if not isinstance(frameworks, dict):
        return None
    details = framework_details()
    if all(frameworks.get(k) == v for k, v in details.items()):
        return None
    return {**env, "frameworks": {**frameworks, **details}}
