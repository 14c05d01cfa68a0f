"""What a TF1-style model_fn never says out loud, read off the TRAIN graph it built.

Most Estimator code keeps its learning rate, momentum and batch size as module
constants and passes them straight to `tf.compat.v1.train.MomentumOptimizer(...)`
and `dataset.batch(...)`; nothing names them to mlrepro. The graph holds them all:
the optimizer's apply ops (`ResourceApplyMomentum`, `ApplyAdam`, ...) take the
learning rate and hyperparameters as inputs, the input pipeline's `BatchDataset`
takes the batch size, and its `TFRecordDataset` / `FixedLengthRecordDataset` /
`TextLineDataset` ops take the file names. Reading them creates no op (so op seeds
and the numbers trained are untouched); a learning rate that is not a constant (a
schedule) is fetched by the training hook at every logged step instead.
"""

from __future__ import annotations

import glob
from typing import Any

# Apply op -> (optimizer, {hyperparameter: input index}); the learning rate is "learning_rate".
APPLY_OPS = {
    "GradientDescent": ("GradientDescentOptimizer", {"learning_rate": 1}),
    "Momentum": ("MomentumOptimizer", {"learning_rate": 2, "momentum": 4}),
    "SparseMomentum": ("MomentumOptimizer", {"learning_rate": 2, "momentum": 5}),
    "KerasMomentum": ("keras SGD (momentum)", {"learning_rate": 2, "momentum": 4}),
    "Adam": ("AdamOptimizer", {"learning_rate": 5, "beta1": 6, "beta2": 7, "epsilon": 8}),
    "RMSProp": ("RMSPropOptimizer", {"learning_rate": 3, "decay": 4, "momentum": 5,
                                     "epsilon": 6}),
    "CenteredRMSProp": ("RMSPropOptimizer (centered)", {"learning_rate": 4, "decay": 5,
                                                        "momentum": 6, "epsilon": 7}),
    "Adagrad": ("AdagradOptimizer", {"learning_rate": 2}),
    "AdagradV2": ("AdagradOptimizer", {"learning_rate": 2, "epsilon": 3}),
    "Adadelta": ("AdadeltaOptimizer", {"learning_rate": 3, "rho": 4, "epsilon": 5}),
    "Ftrl": ("FtrlOptimizer", {"learning_rate": 4, "l1": 5, "l2": 6, "learning_rate_power": 7}),
}
_PREFIXES = ("ResourceSparseApply", "ResourceApply", "SparseApply", "Apply")
FILE_DATASETS = ("TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
                 "FixedLengthRecordDatasetV2", "TextLineDataset")
BATCH_DATASETS = ("BatchDataset", "BatchDatasetV2", "PaddedBatchDataset", "PaddedBatchDatasetV2",
                  "ParallelBatchDataset", "MapAndBatchDataset", "ExperimentalMapAndBatchDataset")
LR_METRIC = "learning_rate"


def _apply_kind(op_type: str) -> str | None:
    for prefix in _PREFIXES:
        if op_type.startswith(prefix):
            rest = op_type[len(prefix):]
            if prefix.endswith("SparseApply") and "Sparse" + rest in APPLY_OPS:
                return "Sparse" + rest
            return rest if rest in APPLY_OPS else None
    return None


def _constant(tensor) -> Any:
    """The tensor's value when the graph fixes it (a Const, a Cast of one), else None."""
    from tensorflow.python.framework import tensor_util

    try:
        value = tensor_util.constant_value(tensor)
    except Exception:  # noqa: BLE001
        return None
    if value is None:
        return None
    try:
        return value.item() if getattr(value, "ndim", 1) == 0 else value.tolist()
    except Exception:  # noqa: BLE001
        return None


def optimizer(graph) -> tuple[dict | None, dict]:
    """(the optimizer's class and hyperparameters, tensors to fetch per logged step)."""
    found: dict = {}
    lr_tensor = None
    for op in graph.get_operations():
        kind = _apply_kind(op.type)
        if kind is None:
            continue
        name, inputs = APPLY_OPS[kind]
        entry = found.setdefault(name, {"class": name, "apply_op": op.type, "variables": 0})
        entry["variables"] += 1
        if entry["variables"] > 1:
            continue
        for hp, index in inputs.items():
            if index >= len(op.inputs):
                continue
            value = _constant(op.inputs[index])
            if value is not None:
                entry[hp] = value
            elif hp == "learning_rate":
                entry[hp] = f"not a constant: recorded each logged step as metric {LR_METRIC!r}"
                lr_tensor = op.inputs[index]
        for attr in ("use_nesterov", "use_locking"):
            try:
                entry[attr] = bool(op.get_attr(attr))
            except (ValueError, TypeError):
                pass
    if not found:
        return None, {}
    classes = sorted(found)
    out = dict(found[classes[0]]) if len(classes) == 1 else {"classes": found}
    return out, ({LR_METRIC: lr_tensor} if lr_tensor is not None else {})


def batch_size(graph, features) -> int | None:
    """The batch size: the features' static first dimension, else the input's batch op."""
    import tensorflow as tf

    for leaf in tf.nest.flatten(features):
        shape = getattr(leaf, "shape", None)
        if shape is not None and shape.rank and shape[0] is not None:
            return int(shape[0])
    sizes = set()
    for op in graph.get_operations():
        if op.type in BATCH_DATASETS and len(op.inputs) > 1:
            value = _constant(op.inputs[1])
            if isinstance(value, int):
                sizes.add(value)
    return sizes.pop() if len(sizes) == 1 else None


_PASS_THROUGH = ("Identity", "Reshape", "ExpandDims", "Squeeze", "Cast")
_SLICES = ("TensorSliceDataset", "TensorDataset")


def _scopes(graph_def):
    """The graph's nodes and each library function's nodes, as name -> NodeDef dicts."""
    yield {n.name: n for n in graph_def.node}
    for fn in graph_def.library.function:
        yield {n.name: n for n in fn.node_def}


def _strings_into(node, nodes, depth: int = 6) -> list[bytes]:
    """The string constants that reach `node`'s first input through reshapes and identities."""
    from tensorflow.python.framework import tensor_util

    for _ in range(depth):
        if not node.input:
            return []
        node = nodes.get(node.input[0].lstrip("^").split(":")[0])
        if node is None:
            return []   # a function argument: the dataset that feeds the function names it
        if node.op == "Const":
            try:
                value = tensor_util.MakeNdarray(node.attr["value"].tensor)
            except Exception:  # noqa: BLE001
                return []
            return [v for v in value.reshape(-1).tolist() if isinstance(v, bytes)]
        if node.op not in _PASS_THROUGH:
            return []
    return []


def input_files(graph) -> list[str]:
    """The files the input pipeline's record/line datasets read, where the graph names them.

    Several files given to one `TFRecordDataset` become a slice dataset of the names
    flat-mapped through a function that reads each one, so names feeding a slice
    dataset count too, when they name files that exist and the pipeline reads files.
    """
    import os

    graph_def = graph.as_graph_def()
    direct: set[str] = set()
    sliced: set[str] = set()
    reads = False
    for nodes in _scopes(graph_def):
        for node in nodes.values():
            if node.op in FILE_DATASETS:
                reads = True
                direct.update(v.decode("utf-8", "replace") for v in _strings_into(node, nodes))
            elif node.op in _SLICES:
                sliced.update(v.decode("utf-8", "replace") for v in _strings_into(node, nodes))
            elif node.op == "MatchingFiles":
                reads = True
                for pattern in _strings_into(node, nodes):
                    direct.update(glob.glob(pattern.decode("utf-8", "replace")))
    if not reads:
        return []
    files = direct | {f for f in sliced if os.path.isfile(f)}
    return sorted(f for f in files if "://" not in f and os.path.isfile(f))


def capture(run, graph, features) -> dict:
    """Record what the graph says into `run`; returns the tensors the hook should fetch."""
    fetch: dict = {}
    try:
        opt, fetch = optimizer(graph)
        params: dict = {}
        if opt is not None:
            params["optimizer"] = opt
        size = batch_size(graph, features)
        if size is not None:
            params["input.batch_size"] = size
        if params:
            run.log_params(params, auto=True)
    except Exception as exc:  # noqa: BLE001 - a capture costs itself, not training
        run.warn(f"reading the optimizer and batch size from the graph failed: {exc!r}")
    try:
        files = input_files(graph)
        if files and "train" not in (run.section("data") or {}):
            from mlrepro.capture.data import fingerprint_files

            fp = fingerprint_files(files, source="input_fn")
            fp["method"] = "files"
            run.log_data("train", fp)
    except Exception as exc:  # noqa: BLE001
        run.warn(f"fingerprinting the files the input_fn reads failed: {exc!r}")
    return fetch
