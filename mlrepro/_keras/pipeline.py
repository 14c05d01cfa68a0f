"""What a `tf.data` pipeline reads and does, read from its serialized graph.

The graph of a dataset holds the file names it reads as string constants (also
inside `interleave`/`flat_map` functions, and `list_files` results), and the ops
that make its order random or stateful. Knowing both tells the data fingerprint
which files to digest, and the resume check whether a restarted process will see
the same order.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

MAX_STRINGS = 20_000
# Ops whose output differs between two iterations of the same pipeline, or that
# run Python code or keep state outside the graph: reading a few batches of such a
# pipeline is neither stable nor free of side effects.
PYTHON_OPS = ("PyFunc", "EagerPyFunc", "PyFuncStateless", "GeneratorDataset")
RANDOM_OPS = ("RandomUniform", "RandomStandardNormal", "RandomShuffle", "RandomDataset",
              "RandomUniformInt", "Multinomial", "TruncatedNormal", "RandomGamma",
              "RandomPoisson", "SamplingDataset")
SHUFFLE_OPS = ("ShuffleDataset", "ShuffleDatasetV2", "ShuffleDatasetV3",
               "ShuffleAndRepeatDataset", "ShuffleAndRepeatDatasetV2")
NONDETERMINISTIC_ATTR = "deterministic"


@dataclass
class Pipeline:
    """Facts about one dataset's pipeline."""

    ops: list = field(default_factory=list)
    files: list = field(default_factory=list)          # existing files named in the graph
    reshuffles: bool = False                           # a shuffle reseeded per iteration
    unseeded_shuffle: bool = False
    python: bool = False                               # runs Python (generators, py_function)
    random: list = field(default_factory=list)         # stateful random ops
    file_cache: bool = False                           # .cache(filename)
    nondeterministic: list = field(default_factory=list)
    error: str | None = None

    @property
    def replayable(self) -> bool:
        """Reading its first batches twice gives the same values, with no side effects."""
        return (self.error is None and not self.reshuffles and not self.unseeded_shuffle
                and not self.python and not self.random and not self.file_cache)


def is_dataset(value: Any) -> bool:
    return hasattr(value, "element_spec") and hasattr(value, "_variant_tensor")


def analyze(dataset: Any) -> Pipeline:
    """Parse a dataset's graph; never raises (an error is recorded in `.error`)."""
    out = Pipeline()
    try:
        import tensorflow as tf

        policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        serialized = dataset._as_serialized_graph(external_state_policy=policy)
        graph = tf.compat.v1.GraphDef.FromString(serialized.numpy())
    except Exception as exc:  # noqa: BLE001
        out.error = f"{type(exc).__name__}: {exc}"[:300]
        return out
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    strings: list[str] = []
    ops = set()
    for node in nodes:
        ops.add(node.op)
        if node.op == "Const" and len(strings) < MAX_STRINGS:
            strings.extend(_strings(node))
        if node.op in SHUFFLE_OPS:
            reshuffle = node.attr.get("reshuffle_each_iteration")
            if node.op.startswith("ShuffleAndRepeat") or (reshuffle is not None and reshuffle.b):
                out.reshuffles = True
            if _seeds_are_zero(node, nodes):
                out.unseeded_shuffle = True
        if node.op in PYTHON_OPS:
            out.python = True
        if node.op in RANDOM_OPS:
            out.random.append(node.op)
        if node.op == "CacheDatasetV2" or node.op == "CacheDataset":
            out.file_cache = out.file_cache or _cache_has_filename(node, graph)
        det = node.attr.get(NONDETERMINISTIC_ATTR)
        if det is not None and det.s == b"false":
            out.nondeterministic.append(node.op)
    out.ops = sorted(ops)
    out.random = sorted(set(out.random))
    out.files = _existing_files(strings)
    return out


def _strings(node) -> list[str]:
    tensor = node.attr["value"].tensor
    if tensor.dtype != 7:  # DT_STRING
        return []
    values = list(tensor.string_val)
    if not values and tensor.tensor_content:
        try:
            import tensorflow as tf

            arr = tf.io.parse_tensor(tensor.SerializeToString(), out_type=tf.string).numpy()
            values = list(arr.ravel()[:MAX_STRINGS]) if hasattr(arr, "ravel") else [arr]
        except Exception:  # noqa: BLE001
            values = []
    out = []
    for v in values:
        try:
            out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
        except UnicodeDecodeError:
            continue
    return out


def _seeds_are_zero(node, nodes) -> bool:
    """A shuffle whose seed and seed2 are both 0 draws fresh random seeds in every process."""
    by_name = {n.name: n for n in nodes}
    values = []
    for inp in node.input[2:4]:
        const = by_name.get(inp.split(":")[0].lstrip("^"))
        if const is None or const.op != "Const":
            return False
        tensor = const.attr["value"].tensor
        values.extend(list(tensor.int64_val) or [0])
    return len(values) == 2 and all(v == 0 for v in values)


def _cache_has_filename(node, graph) -> bool:
    """`.cache()` in memory takes an empty filename constant; a file cache a non-empty one."""
    by_name = {n.name: n for n in graph.node}
    for inp in node.input[1:2]:
        const = by_name.get(inp.split(":")[0].lstrip("^"))
        if const is not None and const.op == "Const":
            names = _strings(const)
            return bool(names and names[0])
    return True  # unknown: be careful


def _existing_files(strings: list[str]) -> list[str]:
    """Strings that name existing files, or glob patterns that match some."""
    out = set()
    for s in strings:
        if not s or len(s) > 4096 or "\x00" in s or "://" in s:
            continue
        if os.path.isfile(s):
            out.add(os.path.abspath(s))
        elif any(c in s for c in "*?[") and os.sep in s:
            out.update(os.path.abspath(p) for p in glob.glob(s) if os.path.isfile(p))
    return sorted(out)


def element_spec(dataset: Any) -> str:
    return repr(dataset.element_spec)


def cardinality(dataset: Any) -> int:
    """Number of elements; -1 infinite, -2 unknown (TensorFlow's own codes)."""
    try:
        return int(dataset.cardinality())
    except Exception:  # noqa: BLE001
        return -2


def static_batch_size(dataset: Any) -> int | None:
    """The batch dimension of the first component, when the spec fixes it."""
    try:
        import tensorflow as tf

        first = tf.nest.flatten(dataset.element_spec)[0]
        dim = first.shape[0] if first.shape.rank else None
        return int(dim) if dim is not None else None
    except Exception:  # noqa: BLE001
        return None
