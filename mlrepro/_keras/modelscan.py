"""Random state the model's forward pass uses, read from a trace of `model(x, training=True)`.

A layer that calls `tf.random.normal` (or any legacy stateful random op) in
`call` draws from a kernel whose position lives in the process, not in a
variable: a restarted process starts that sequence again, so a resumed run
differs. Keras 3 layers that draw through a `SeedGenerator` keep their position
in a variable the checkpoint holds; a `tf.random.Generator` a layer keeps is a
variable too, and the checkpoint saves it when the trace shows the model uses
it. The trace builds a graph only (nothing runs, no variable changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlrepro._keras import flavour

STATEFUL_RANDOM = ("RandomUniform", "RandomUniformInt", "RandomStandardNormal",
                   "TruncatedNormal", "Multinomial", "RandomGamma", "RandomPoisson",
                   "RandomPoissonV2", "RandomShuffle", "RandomCrop", "ParameterizedTruncatedNormal")
MAX_FINDINGS = 10
SHIPPED = ("keras", "tf_keras")


@dataclass
class ModelScan:
    random: list = field(default_factory=list)      # "Op (node name)" of stateful random ops
    variables: list = field(default_factory=list)   # variables used beyond the model's own
    error: str | None = None
    scanned: bool = False


def input_signature(x: Any) -> Any:
    """TensorSpecs of the model's inputs for a `fit` input (a dataset or arrays)."""
    import tensorflow as tf

    if hasattr(x, "element_spec"):
        spec = x.element_spec
        if isinstance(spec, tuple):
            spec = spec[0]
        return spec
    return tf.nest.map_structure(
        lambda a: tf.TensorSpec((None,) + tuple(a.shape[1:]), tf.as_dtype(a.dtype)), x)


def own_code(model: Any) -> list[str]:
    """Classes of the model and its layers whose `call` is the user's, not Keras' own.

    Keras' shipped layers draw through SeedGenerators (Keras 3) or are checked by
    name (tf_keras); only code Keras did not ship needs the trace, which costs
    seconds for a large model.
    """
    from mlrepro._keras.params import all_layers

    out = []
    for obj in [model] + list(all_layers(model)):
        for klass in type(obj).__mro__:
            if "call" in vars(klass):
                if klass.__module__.split(".")[0] not in SHIPPED:
                    out.append(klass.__name__)
                break
    return sorted(set(out))


def scan(model: Any, x: Any) -> ModelScan:
    """Trace the forward pass once when the model runs code of the user's; never raises
    (an error is recorded)."""
    out = ModelScan()
    desc = flavour.describe(model)
    if desc.get("backend") != "tensorflow" or x is None:
        out.error = "not traced (only the TensorFlow backend is scanned)"
        return out
    if not own_code(model):
        return out
    try:
        import tensorflow as tf

        spec = input_signature(x)
        concrete = tf.function(lambda inputs: model(inputs, training=True)
                               ).get_concrete_function(spec)
        graph = concrete.graph.as_graph_def()
    except Exception as exc:  # noqa: BLE001 - a model we cannot trace: say so
        out.error = f"{type(exc).__name__}: {exc}"[:300]
        return out
    out.scanned = True
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        if node.op in STATEFUL_RANDOM and len(out.random) < MAX_FINDINGS:
            out.random.append(f"{node.op} ({_layer_of(node.name)})")
    known = set()
    for v in list(model.variables) + flavour.optimizer_variables(flavour.optimizer_of(model)):
        known.add(id(v))
        inner = getattr(v, "value", None)
        if inner is not None and not callable(inner):
            known.add(id(inner))
        known.add(id(getattr(v, "_value", None)))
    out.variables = [v for v in concrete.variables if id(v) not in known]
    out.random = sorted(set(out.random))
    return out


def _layer_of(node_name: str) -> str:
    """'sequential/noisy/random_normal/RandomStandardNormal' -> 'layer sequential/noisy'."""
    parts = [p for p in node_name.split("/") if p]
    scope = parts[:-2] if len(parts) > 2 else parts[:-1]
    return "layer " + "/".join(scope) if scope else node_name


def scan_train_function(model: Any) -> "list[str] | None":
    """Stateful random ops in the train function(s) Keras traced; None before any trace."""
    concretes = []
    try:
        for function in _traced_functions(getattr(model, "train_function", None)):
            concretes.extend(function._list_all_concrete_functions())
    except Exception:  # noqa: BLE001
        return None
    if not concretes:
        return None
    found = set()
    for concrete in concretes:
        graph = concrete.graph.as_graph_def()
        nodes = list(graph.node)
        for f in graph.library.function:
            nodes.extend(f.node_def)
        found.update(f"{n.op} ({_layer_of(n.name)})" for n in nodes if n.op in STATEFUL_RANDOM)
    return sorted(found)


def _traced_functions(function: Any, depth: int = 0) -> list:
    """The `tf.function`s behind Keras' train function: itself (tf_keras) or the ones its
    Python wrapper closes over (Keras 3)."""
    if function is None or depth > 2:
        return []
    if hasattr(function, "_list_all_concrete_functions"):
        return [function]
    out = []
    for cell in getattr(function, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if callable(value):
            out.extend(_traced_functions(value, depth + 1))
    return out
