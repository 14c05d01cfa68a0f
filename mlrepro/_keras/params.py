"""A model's training setup as plain data: optimizer, loss, metrics, model, distribution.

Everything is read from public Keras APIs (`get_compile_config`, `get_config`,
`summary`, `count_params`) with a fallback per item, so one failing item (a
subclassed model without `get_config`) costs that item, not the record.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any, Callable

from mlrepro._keras import flavour

MAX_INLINE_CONFIG = 100_000  # characters of model config kept inline in params


def _safe(fn: Callable[[], Any], errors: dict, name: str) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one item, not the whole record
        errors[name] = f"{type(exc).__name__}: {exc}"[:300]
        return None


def collect(model: Any, fit_arguments: dict, keras_params: dict | None = None) -> tuple[dict, dict]:
    """(auto params for the run, large texts to store as artifacts)."""
    errors: dict = {}
    out: dict = {"keras": flavour.describe(model)}
    optimizer = flavour.optimizer_of(model)
    out["optimizer"] = _safe(lambda: optimizer_params(optimizer), errors, "optimizer")
    compile_config = _safe(lambda: compile_params(model), errors, "compile") or {}
    out["loss"] = compile_config.pop("loss", None)
    out["metrics"] = compile_config.pop("metrics", None)
    compile_config.pop("optimizer", None)
    out["compile"] = compile_config
    fit = dict(fit_arguments or {})
    if keras_params:
        fit["steps"] = keras_params.get("steps")
        fit.setdefault("epochs", keras_params.get("epochs"))
    out["fit"] = fit
    texts: dict = {}
    model_params = _safe(lambda: model_summary(model, texts), errors, "model") or {}
    out["model"] = model_params
    out["distribution"] = _safe(lambda: distribution_params(model), errors, "distribution")
    out["mixed_precision"] = _safe(lambda: precision_params(model), errors, "mixed_precision")
    if errors:
        out["capture_errors"] = errors
    return out, texts


def optimizer_params(optimizer: Any) -> dict | None:
    """Class and full config; learning-rate schedules appear as their own config."""
    if optimizer is None:
        return None
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer
    target = inner if inner is not None else optimizer
    klass = type(target)
    config = target.get_config()
    out = {"class": f"{klass.__module__}.{klass.__qualname__}", "name": klass.__name__,
           "config": _jsonable(config)}
    lr = config.get("learning_rate")
    if isinstance(lr, dict):
        out["learning_rate_schedule"] = lr.get("class_name")
    elif lr is not None:
        out["learning_rate"] = float(lr)
    for key in ("momentum", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                "beta_1", "beta_2", "epsilon", "nesterov", "use_ema",
                "gradient_accumulation_steps"):
        if key in config:
            out[key] = _jsonable(config[key])
    if inner is not None:
        out["loss_scale"] = {"class": type(optimizer).__name__,
                             "config": _jsonable(_safe_config(optimizer))}
    return out


def _safe_config(obj: Any) -> Any:
    try:
        return obj.get_config()
    except Exception:  # noqa: BLE001
        return None


def compile_params(model: Any) -> dict:
    """Loss, metrics, loss weights, steps per execution, jit and eager flags."""
    getter = getattr(model, "get_compile_config", None)
    config = getter() if getter is not None else None
    if config:
        return _jsonable(dict(config))
    out = {"loss": _describe_loss(getattr(model, "loss", None)),
           "metrics": [getattr(m, "name", str(m)) for m in getattr(model, "metrics", [])]}
    for key in ("run_eagerly", "jit_compile", "steps_per_execution"):
        value = getattr(model, key, None)
        out[key] = value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)
    return out


def _describe_loss(loss: Any) -> Any:
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        return {k: _describe_loss(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_describe_loss(v) for v in loss]
    get_config = getattr(loss, "get_config", None)
    if get_config is not None:
        try:
            return {"class": type(loss).__name__, "config": _jsonable(get_config())}
        except Exception:  # noqa: BLE001
            pass
    return getattr(loss, "__name__", None) or type(loss).__name__


def model_summary(model: Any, texts: dict) -> dict:
    """Class, name, layer and parameter counts, config digest and `summary()` text."""
    klass = type(model)
    out: dict = {"class": f"{klass.__module__}.{klass.__qualname__}",
                 "name": getattr(model, "name", None)}
    layers = all_layers(model)
    out["layers"] = len(layers)
    out["layer_types"] = _counts(type(layer).__name__ for layer in layers)
    trainable = sum(_size(v) for v in getattr(model, "trainable_weights", []))
    non_trainable = sum(_size(v) for v in getattr(model, "non_trainable_weights", []))
    out.update(params_total=trainable + non_trainable, params_trainable=trainable,
               params_non_trainable=non_trainable)
    lines: list[str] = []
    try:
        model.summary(print_fn=lambda line, *a, **k: lines.append(str(line)))
        summary = "\n".join(lines)
        out["summary"] = _strip_box_drawing(summary)
        texts["model_summary.txt"] = summary
    except Exception as exc:  # noqa: BLE001
        out["summary_error"] = repr(exc)[:300]
    try:
        config = model.get_config()
        text = json.dumps(_jsonable(config), sort_keys=True)
        out["config_digest"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if len(text) <= MAX_INLINE_CONFIG:
            out["config"] = json.loads(text)
        texts["model_config.json"] = text
    except Exception as exc:  # noqa: BLE001 - subclassed models may not define get_config
        out["config_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _strip_box_drawing(text: str) -> str:
    """Keep the summary readable in JSON viewers that mangle box-drawing characters."""
    table = {c: "-" for c in "━─"}
    table.update({c: "|" for c in "┃│"})
    table.update({c: "+" for c in "┏┳┓┡╇┩├┼┤└┴┘"})
    return text.translate(str.maketrans(table))


def all_layers(model: Any) -> list:
    """Every layer of the model, nested ones included."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        try:
            return [layer for layer in flatten(include_self=False)]
        except TypeError:
            pass
    return list(getattr(model, "layers", []))


def _counts(names) -> dict:
    out: dict = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out


def _size(v: Any) -> int:
    shape = getattr(v, "shape", ())
    n = 1
    for d in shape:
        n *= int(d) if d is not None else 0
    return n


def distribution_params(model: Any) -> dict:
    """Strategy class and replica count (TensorFlow), or the Keras 3 distribution (JAX)."""
    out: dict = {}
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        out["strategy"] = type(strategy).__name__
        out["replicas"] = int(getattr(strategy, "num_replicas_in_sync", 1))
        resolver = getattr(strategy, "cluster_resolver", None)
        if resolver is not None:
            out["task_type"] = getattr(resolver, "task_type", None)
            out["task_id"] = getattr(resolver, "task_id", None)
            try:
                spec = resolver.cluster_spec().as_dict()
                out["workers"] = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
            except Exception:  # noqa: BLE001
                pass
    keras = sys.modules.get("keras")
    dist = getattr(keras, "distribution", None)
    if dist is not None and hasattr(dist, "distribution"):
        try:
            current = dist.distribution()
            if current is not None:
                out["keras_distribution"] = type(current).__name__
        except Exception:  # noqa: BLE001
            pass
    if not out:
        out = {"strategy": None, "replicas": 1}
    return out


def precision_params(model: Any) -> dict:
    """The global and the model's dtype policy (`mixed_float16`, `float32`...)."""
    out: dict = {}
    module = sys.modules.get("tf_keras") if flavour.of_model(model) == flavour.TF_KERAS \
        else sys.modules.get("keras")
    mp = getattr(module, "mixed_precision", None)
    if mp is not None:
        out["global_policy"] = getattr(mp.global_policy(), "name", str(mp.global_policy()))
    policy = getattr(model, "dtype_policy", None)
    if policy is not None:
        out["model_policy"] = getattr(policy, "name", str(policy))
    optimizer = flavour.optimizer_of(model)
    out["loss_scale_optimizer"] = bool(optimizer is not None and
                                       hasattr(optimizer, "inner_optimizer"))
    return out


def _jsonable(value: Any) -> Any:
    from mlrepro.record import jsonable

    return jsonable(value)


def hparams(user_params: dict, auto: dict) -> dict:
    """The flat scalar view TensorBoard's hparams plugin accepts."""
    out: dict = {}
    for key, value in (user_params or {}).items():
        if isinstance(value, (bool, int, float, str)):
            out[str(key)] = value
    opt = auto.get("optimizer") or {}
    fit = auto.get("fit") or {}
    for key, value in (("optimizer", opt.get("name")), ("learning_rate", opt.get("learning_rate")),
                       ("learning_rate_schedule", opt.get("learning_rate_schedule")),
                       ("batch_size", fit.get("batch_size")), ("epochs", fit.get("epochs")),
                       ("loss", auto.get("loss") if isinstance(auto.get("loss"), str) else None)):
        if isinstance(value, (bool, int, float, str)):
            out.setdefault(key, value)
    return out


def learning_rate(model: Any) -> float | None:
    """The optimizer's current learning rate (a schedule evaluated at the current step)."""
    opt = flavour.optimizer_of(model)
    if opt is None:
        return None
    inner = getattr(opt, "inner_optimizer", None)
    target = inner if inner is not None else opt
    try:
        lr = getattr(target, "learning_rate", None)
        if lr is None:
            lr = getattr(target, "lr", None)
        if callable(lr) and not hasattr(lr, "numpy") and not hasattr(lr, "value"):
            lr = lr(target.iterations)
        return float(lr)
    except Exception:  # noqa: BLE001
        return None

