"""What a `tf.data` pipeline reads and does, read from its serialized graph.

The graph of a dataset holds the file names it reads as string constants (also
inside `interleave`/`flat_map` functions, and `list_files` results), and the ops
that make its order random or stateful. Knowing both tells the data fingerprint
which files to digest, and the resume check whether a restarted process will see
the same order.

Random state that lives in a variable is invisible to a list of op names: a
`tf.random.Generator` in `map` is `RngReadAndSkip` + stateless ops, a Keras
`RandomFlip` stateless ops fed by a variable it writes. So every op inside the
dataset's functions that the op registry marks stateful is looked at, and the
variables those functions capture are found (`state_variables`): reading batches
of such a pipeline would advance that state and change the user's training, and
the checkpoint saves it.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

from mlrepro._keras import order

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
# Stateful ops inside a dataset function that keep no state of their own: reading a
# variable changes nothing (a `deterministic_dataset` reads its epoch this way).
HARMLESS_STATEFUL = ("ReadVariableOp", "VarHandleOp", "_Arg", "_Retval", "NoOp")
# Ops that write a variable: `tf.random.Generator` (RngReadAndSkip), a Keras
# SeedGenerator (AssignVariableOp), counters (AssignAddVariableOp).
VARIABLE_WRITES = ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
                   "RngReadAndSkip", "RngSkip", "StatefulUniform", "StatefulUniformInt",
                   "StatefulUniformFullInt", "StatefulStandardNormalV2",
                   "StatefulTruncatedNormal", "StatefulRandomBinomial")
PARALLEL_OPS = ("ParallelMapDataset", "ParallelMapDatasetV2", "ParallelInterleaveDatasetV4",
                "ParallelBatchDataset")


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
    stateful: list = field(default_factory=list)       # "Op in function": state touched per element
    writes: list = field(default_factory=list)         # "Op in function": a variable written
    unseeded_random: list = field(default_factory=list)  # stateful random ops with seed 0/0
    parallel_writes: bool = False                      # a parallel map/interleave writes state
    variables: list = field(default_factory=list)      # names of the variables its functions use
    foreign_variables: bool = False                    # one not made by deterministic_dataset

    @property
    def replayable(self) -> bool:
        """Reading its first batches twice gives the same values, with no side effects."""
        return self.why_not_replayable() is None

    def why_not_replayable(self) -> str | None:
        """Why reading its first batches could change training or differ; None when it cannot."""
        if self.error is not None:
            return "its graph could not be read"
        if self.python:
            return "it runs Python code"
        if self.writes:
            return f"it writes state ({', '.join(self.writes[:3])})"
        if self.stateful:
            return f"it runs stateful ops ({', '.join(self.stateful[:3])})"
        if self.foreign_variables:
            return f"it reads variables ({', '.join(self.variables[:3])})"
        if self.reshuffles:
            return "it reshuffles each epoch"
        if self.unseeded_shuffle:
            return "its shuffle is unseeded"
        if self.random:
            return f"it draws random numbers ({', '.join(self.random)})"
        if self.file_cache:
            return "it writes a file cache"
        return None


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
    users = _function_users(nodes, graph)
    parallel_fns = {fn for fn, op in users.items() if op in PARALLEL_OPS}
    for function in graph.library.function:
        nodes.extend(function.node_def)
        _scan_function(function, users, out, function.signature.name in parallel_fns)
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
    try:
        captured = state_variables(dataset)
    except Exception:  # noqa: BLE001 - a dataset type we cannot walk: assume the worst
        captured, out.foreign_variables = [], True
    out.variables = sorted({_variable_label(v) for v in captured})
    out.foreign_variables = out.foreign_variables or any(
        not order.is_epoch_variable(v) for v in captured)
    return out


def _function_users(nodes, graph) -> dict:
    """Function name -> the op (dataset transformation) that calls it."""
    out = {}
    everything = list(nodes) + [n for f in graph.library.function for n in f.node_def]
    for node in everything:
        for attr in node.attr.values():
            if attr.HasField("func") and attr.func.name:
                out.setdefault(attr.func.name, node.op)
    return out


def _scan_function(function, users: dict, out: Pipeline, parallel: bool) -> None:
    """Stateful ops in one dataset function, named by op and by the transformation using it."""
    from tensorflow.python.framework import op_def_registry

    where = users.get(function.signature.name) or _function_label(function.signature.name)
    for node in function.node_def:
        op = node.op
        definition = op_def_registry.get(op)
        if definition is None or not definition.is_stateful or op in HARMLESS_STATEFUL \
                or op.endswith(("Dataset", "DatasetV2", "DatasetV3", "DatasetV4")):
            continue
        label = f"{op} in {where}"
        if op in VARIABLE_WRITES:
            out.writes.append(label)
            if parallel:
                out.parallel_writes = True
        elif op in PYTHON_OPS:
            continue
        else:
            out.stateful.append(label)
            if op in RANDOM_OPS and not _op_seeded(node):
                out.unseeded_random.append(label)
    out.writes = sorted(set(out.writes))
    out.stateful = sorted(set(out.stateful))
    out.unseeded_random = sorted(set(out.unseeded_random))


def _op_seeded(node) -> bool:
    """A legacy random op with seed or seed2 set restarts the same sequence per iterator."""
    seed, seed2 = node.attr.get("seed"), node.attr.get("seed2")
    return bool((seed is not None and seed.i) or (seed2 is not None and seed2.i))


def _function_label(name: str) -> str:
    name = name.removeprefix("__inference_")
    head, _, tail = name.rpartition("_")
    return head if tail.isdigit() else name


def _variable_label(v) -> str:
    return str(getattr(v, "name", "") or getattr(v, "path", "") or type(v).__name__)


def state_variables(dataset: Any) -> list:
    """The variables the dataset's functions use (`tf.random.Generator` and SeedGenerator
    states among them), walking the whole pipeline, in a stable order."""
    out, seen, datasets = [], set(), set()
    stack = [dataset]
    while stack:
        ds = stack.pop(0)
        if id(ds) in datasets:
            continue
        datasets.add(id(ds))
        for wrapper in ds._functions():
            function = getattr(wrapper, "function", None)
            for v in list(getattr(function, "variables", None) or []):
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        stack.extend(ds._inputs())
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
