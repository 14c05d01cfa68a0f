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
    pipeline_writes: list = field(default_factory=list)   # state the pipeline writes
    pipeline_state_saved: int = 0         # its variables the checkpoint holds
    parallel_writes: bool = False         # a parallel map writes that state
    model_random: list = field(default_factory=list)      # stateful random ops in the model
    model_state_saved: int = 0            # generator variables the model uses, saved too
    model_scan_error: str | None = None
    callbacks_saved: list = field(default_factory=list)   # stateful callbacks, state saved
    callbacks_watched: list = field(default_factory=list)  # callbacks mlrepro does not know
    callback_notes: list = field(default_factory=list)


def judge(f: Facts) -> dict:
    """{"exact": bool, "reasons": [...why not], "notes": [...], "input_order": text}."""
    reasons: list[str] = []
    notes: list[str] = [NOTE_EPOCH_BOUNDARY, NOTE_SAME_MACHINE]
    if not f.op_determinism:
        reasons.append("op determinism is off: pass deterministic=True")
    if f.seed is None:
        reasons.append("no seed was set: pass seed= or deterministic=True")
    order = _input_order(f, reasons)
    reasons.extend(_model_reasons(f))
    if f.model_scan_error and f.backend == "tensorflow":
        notes.append("the model's forward pass could not be traced, so random ops inside it "
                     f"were not looked for ({f.model_scan_error[:120]})")
    if f.callbacks_saved:
        notes.append("the state of " + ", ".join(f.callbacks_saved) + " is saved in every "
                     "checkpoint and restored on resume")
    if f.callbacks_watched:
        notes.append("callbacks mlrepro does not know (" + ", ".join(f.callbacks_watched) +
                     ") are watched: if their attributes change during training the record "
                     "says so at the next checkpoint")
    notes.extend(f.callback_notes)
    if f.pipeline_state_saved or f.model_state_saved:
        notes.append(f"{f.pipeline_state_saved + f.model_state_saved} random-generator "
                     "variable(s) the input pipeline or the model draw from are saved in "
                     "every checkpoint and restored on resume")
    if f.legacy_rng_layers and not f.model_random:
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


def _model_reasons(f: Facts) -> list[str]:
    out = []
    if f.model_random:
        out.append(
            "the model draws from stateful random ops whose position lives in the process, "
            f"not in a variable ({'; '.join(f.model_random[:5])}): a restarted process starts "
            "their sequence again; draw through keras.random with a "
            "keras.random.SeedGenerator (or a tf.random.Generator kept by the layer)")
    return out


def _input_order(f: Facts, reasons: list[str]) -> str:
    """How the input order of epoch e is decided; appends every reason it is not exact."""
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
        return _pipeline_order(f, reasons)
    if f.input_kind == "sequence":
        reasons.append("a PyDataset/Sequence decides its own order; mlrepro cannot see or "
                       "save it")
        return "PyDataset"
    if f.input_kind == "python":
        reasons.append("a Python generator cannot be rewound or saved")
        return "Python generator"
    reasons.append(f"unknown input kind {f.input_kind!r}")
    return "unknown"


def _pipeline_order(f: Facts, reasons: list[str]) -> str:
    orders = []
    if f.ordered and not f.reshuffles:
        orders.append("mlrepro.keras.deterministic_dataset: index_shuffle(seed, epoch)")
    if f.reshuffles:
        reasons.append(
            "the tf.data pipeline reshuffles each iteration (Dataset.shuffle with "
            "reshuffle_each_iteration=True, the default): its order comes from a "
            "per-process counter no checkpoint can hold (tensorflow/tensorflow#58925); use "
            "mlrepro.keras.deterministic_dataset(...) or shuffle(..., seed=S, "
            "reshuffle_each_iteration=False)")
        orders.append("per-process reshuffle")
    if f.unseeded_shuffle:
        reasons.append("the tf.data pipeline shuffles without a seed, so every process "
                       "draws another order: pass shuffle(..., seed=S)")
        orders.append("unseeded shuffle")
    if f.python_ops:
        reasons.append("the tf.data pipeline runs Python code (from_generator, "
                       "py_function) whose state mlrepro cannot save: build it from "
                       "tensors, or use mlrepro.keras.deterministic_dataset")
        orders.append("Python code")
    if f.random_ops:
        reasons.append("the tf.data pipeline draws from unseeded stateful random ops "
                       f"({', '.join(f.random_ops)}) that start afresh in a new process: "
                       "set a seed (deterministic=True) or use stateless random ops")
        orders.append("stateful random ops")
    if f.pipeline_writes and not f.pipeline_state_saved:
        reasons.append("the tf.data pipeline writes random state ("
                       f"{', '.join(f.pipeline_writes[:3])}) in variables mlrepro could not "
                       "find to save: keep the tf.random.Generator or layer in a variable "
                       "the dataset's map function captures")
    if f.pipeline_writes and f.parallel_writes:
        reasons.append("a parallel map (num_parallel_calls) draws from a random generator: "
                       "the order of the draws between elements is not fixed, so neither "
                       "is the result; map sequentially, or draw with "
                       "tf.random.stateless_* from a per-element seed")
    if orders:
        return "; ".join(orders)
    if f.pipeline_writes:
        return "fixed pipeline order; its random generators are checkpointed"
    return "fixed pipeline order"
