"""Whether an interrupted run resumed from its last checkpoint ends bit-identical, and why not.

Pure logic over facts the callback gathers. What was measured (Keras 3,
TensorFlow backend, CPU, op determinism on): restoring model + optimizer +
seed-generator states at an epoch boundary gives the same final weights as an
uninterrupted run when the input order of epoch *e* does not depend on how many
epochs this process has run. That holds for NumPy input (Keras draws its
permutation from the global seed, identically each epoch), for `tf.data`
pipelines without per-iteration reshuffling, and for
`mlrepro.keras.deterministic_dataset`; it fails for the cases listed in
`reasons`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOTE_EPOCH_BOUNDARY = ("resume restores the last epoch-end checkpoint and re-runs the "
                       "interrupted epoch from its first batch (same result, lost time)")
NOTE_SAME_MACHINE = ("bit-exact only on the same kind of machine and software: another CPU "
                     "instruction set (oneDNN/XLA kernels), GPU model, thread count or "
                     "TensorFlow/Keras version can change the last bits")


@dataclass
class Facts:
    """What the callback knows at `on_train_begin`."""

    flavour: str = "keras3"
    backend: str = "tensorflow"
    op_determinism: bool = False
    seed: int | None = None
    input_kind: str = "arrays"            # arrays | tf.data | sequence | python | none
    shuffle: object = True                # fit's shuffle argument
    ordered: bool = False                 # mlrepro.keras.deterministic_dataset
    reshuffles: bool = False
    unseeded_shuffle: bool = False
    python_ops: bool = False
    random_ops: list = field(default_factory=list)
    steps_per_epoch: int | None = None
    batches_per_epoch: int | None = None  # what the input gives per pass, when known
    legacy_rng_layers: list = field(default_factory=list)
    multi_worker: bool = False
    accelerator: bool = False


def judge(f: Facts) -> dict:
    """{"exact": bool, "reasons": [...why not], "notes": [...], "input_order": text}."""
    reasons: list[str] = []
    notes: list[str] = [NOTE_EPOCH_BOUNDARY, NOTE_SAME_MACHINE]
    if not f.op_determinism:
        reasons.append("op determinism is off: pass deterministic=True")
    if f.seed is None:
        reasons.append("no seed was set: pass seed= or deterministic=True")
    order = _input_order(f, reasons)
    if f.legacy_rng_layers:
        reasons.append(
            "tf_keras layers draw random numbers from legacy stateful ops whose state no "
            f"checkpoint holds ({', '.join(sorted(set(f.legacy_rng_layers))[:5])}); a restarted "
            "process restarts their sequence: use Keras 3 for a bit-exact resume")
    if f.steps_per_epoch and f.input_kind in ("arrays", "tf.data") and \
            f.batches_per_epoch != f.steps_per_epoch:
        reasons.append(
            f"steps_per_epoch={f.steps_per_epoch} does not cover one pass of the input, so "
            "Keras carries one iterator across epochs and a restarted process starts the "
            "data from its beginning")
    if f.multi_worker:
        notes.append("multi-worker resume restores every worker from the chief's checkpoint "
                     "directory; it was not verified bit for bit")
    if f.accelerator:
        notes.append("on accelerators exactness also needs every op to have a deterministic "
                     "kernel (TensorFlow raises for those that do not under op determinism); "
                     "verified on CPU only")
    if f.backend == "jax":
        notes.append("the jax backend shuffles NumPy input with NumPy's global RNG, which the "
                     "checkpoint saves and restores; on GPU also set "
                     "XLA_FLAGS=--xla_gpu_deterministic_ops=true")
    elif f.backend != "tensorflow":
        notes.append(f"resume on the {f.backend} backend was not verified")
    return {"exact": not reasons, "reasons": reasons, "notes": notes, "input_order": order}


def _input_order(f: Facts, reasons: list[str]) -> str:
    if f.input_kind == "arrays":
        if f.flavour == "tf_keras" and f.shuffle not in (False, None, "batch"):
            reasons.append(
                "tf_keras shuffles NumPy input with one stateful op drawn once per epoch of a "
                "single iterator, so a restarted process replays epoch 0's order: use "
                "mlrepro.keras.deterministic_dataset(...) or shuffle=False")
            return "tf_keras per-process shuffle"
        if f.shuffle in (False, None):
            return "array order (no shuffle)"
        if f.backend == "tensorflow":
            return ("Keras permutation from the global seed (the same order every epoch in "
                    "this Keras version)")
        return "NumPy global RNG (saved in the checkpoint)"
    if f.input_kind == "tf.data":
        if f.ordered and not f.reshuffles:
            return "mlrepro.keras.deterministic_dataset: index_shuffle(seed, epoch)"
        if f.reshuffles:
            reasons.append(
                "the tf.data pipeline reshuffles each iteration (Dataset.shuffle with "
                "reshuffle_each_iteration=True, the default): its order comes from a "
                "per-process counter no checkpoint can hold (tensorflow/tensorflow#58925); use "
                "mlrepro.keras.deterministic_dataset(...) or shuffle(..., seed=S, "
                "reshuffle_each_iteration=False)")
            return "per-process reshuffle"
        if f.unseeded_shuffle:
            reasons.append("the tf.data pipeline shuffles without a seed")
            return "unseeded shuffle"
        if f.python_ops:
            reasons.append("the tf.data pipeline runs Python code (from_generator, "
                           "py_function) whose state mlrepro cannot save")
            return "Python code"
        if f.random_ops:
            reasons.append("the tf.data pipeline draws from stateful random ops "
                           f"({', '.join(f.random_ops)}) that restart in a new process")
            return "stateful random ops"
        return "fixed pipeline order"
    if f.input_kind == "sequence":
        reasons.append("a PyDataset/Sequence decides its own order; mlrepro cannot see or "
                       "save it")
        return "PyDataset"
    if f.input_kind == "python":
        reasons.append("a Python generator cannot be rewound or saved")
        return "Python generator"
    reasons.append(f"unknown input kind {f.input_kind!r}")
    return "unknown"
