"""`wrap_model_fn`: the user's model_fn, plus mlrepro's hooks on the EstimatorSpec it returns."""

from __future__ import annotations

import inspect
import sys
from typing import Callable, Mapping, Sequence

from mlrepro._estimator import binding
from mlrepro._estimator.checkpoints import MODES as CHECKPOINT_MODES
from mlrepro._estimator.framework import load_tf, mode_name
from mlrepro._estimator.validate import ModelFnError, check_spec, translate
from mlrepro.core import sameness
from mlrepro.errors import MlreproError

DEFAULT_EVERY_N_STEPS = 100
_PASSED = ("labels", "mode", "params", "config")


def accepted_args(fn: Callable) -> set[str]:
    """The argument names a model_fn accepts (all of them if it takes **kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set(_PASSED)
    names = set()
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            return set(_PASSED) | {"features"}
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names


def check_options(project, every_n_steps, tensors, checkpoints) -> dict:
    """Validate wrap_model_fn's options; return tensors as a name -> tensor-name dict."""
    if not isinstance(project, str) or not project.strip() or "/" in project:
        raise MlreproError(f"project {project!r} must be a non-empty name without '/': "
                           "e.g. wrap_model_fn(model_fn, project=\"cifar10\")")
    if every_n_steps is not None and (not isinstance(every_n_steps, int)
                                      or isinstance(every_n_steps, bool) or every_n_steps < 1):
        raise MlreproError(f"every_n_steps {every_n_steps!r} must be a positive int or None "
                           "(None: the RunConfig's save_summary_steps)")
    if checkpoints not in CHECKPOINT_MODES:
        raise MlreproError(f"checkpoints {checkpoints!r} must be one of "
                           f"{', '.join(repr(m) for m in CHECKPOINT_MODES)}")
    if tensors is None:
        return {}
    if isinstance(tensors, Mapping):
        out = dict(tensors)
    elif isinstance(tensors, (list, tuple)) and all(isinstance(t, str) for t in tensors):
        out = {t.split(":")[0]: t for t in tensors}
    else:
        raise MlreproError(f"tensors {tensors!r} must map metric names to tensor names, e.g. "
                           "tensors={\"lr\": \"learning_rate:0\"}, or list tensor names")
    for name, ref in out.items():
        if not isinstance(name, str) or not isinstance(ref, str):
            raise MlreproError(f"tensors entry {name!r}: {ref!r} must be two strings (metric "
                               "name: tensor name); inside model_fn use "
                               "mlrepro.estimator.log_tensor(name, tensor) for tensor objects")
    return out


def seed_keras_for_graph(seed: int | None) -> bool:
    """Make Keras initializers in this graph draw their seeds from `seed`.

    Keras 2 layers built in a graph take each initializer's seed from a
    process-wide random stream, so a second Estimator in the same process (or a
    graph built after other Keras code) would start from different weights.
    Reseeding that stream per graph makes every graph a function of the
    RunConfig's seed; Python's and NumPy's global random states are left as they were.
    """
    if seed is None or "keras" not in sys.modules:
        return False
    import random

    import numpy as np
    import tensorflow as tf

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        tf.keras.utils.set_random_seed(seed)
        return True
    except Exception:  # noqa: BLE001 - Keras without the API: leave its stream alone
        return False
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def eval_name_from_stack(max_depth: int = 30) -> str | None:
    """The `name` given to Estimator.evaluate(...) that is building this graph, if any."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name in ("_actual_eval", "evaluate") and \
                "tensorflow_estimator" in code.co_filename and "name" in frame.f_locals:
            name = frame.f_locals.get("name")
            return str(name) if name else None
        frame = frame.f_back
    return None


def wrap_model_fn(model_fn: Callable, *, project: str = "default", store=None, name: str | None = None,
                  tags: Mapping | None = None, every_n_steps: int | None = None,
                  tensors: "Mapping[str, str] | Sequence[str] | None" = None,
                  checkpoints: str = "all", resume: str = "auto") -> Callable:
    """See `mlrepro.estimator.wrap_model_fn`."""
    if not callable(model_fn):
        raise MlreproError(f"model_fn {model_fn!r} is not callable: pass the function the "
                           "Estimator would call, wrap_model_fn(model_fn, project=...)")
    wanted = check_options(project, every_n_steps, tensors, checkpoints)
    resume = sameness.check_mode(resume)
    accepted = accepted_args(model_fn)
    if "features" not in accepted and not any(
            p.kind is p.VAR_POSITIONAL for p in _parameters(model_fn)):
        raise MlreproError(f"model_fn {getattr(model_fn, '__name__', model_fn)!r} has no "
                           "`features` argument: define it as model_fn(features, labels, mode, "
                           "params)")

    def _arguments(labels, mode, params, config) -> dict:
        kwargs = {}
        if "labels" in accepted:
            kwargs["labels"] = labels
        elif labels is not None:
            raise ModelFnError(f"model_fn does not take labels, but input_fn returns labels in "
                               f"{mode_name(mode)} mode: add a `labels` argument to model_fn")
        if "mode" in accepted:
            kwargs["mode"] = mode
        if "params" in accepted:
            kwargs["params"] = params
        elif params:
            raise ModelFnError("model_fn does not take params, but the Estimator was given "
                               "params: add a `params` argument to model_fn")
        if "config" in accepted:
            kwargs["config"] = config
        seed_keras_for_graph(getattr(config, "tf_random_seed", None))
        return kwargs

    def _translated(exc, mode):
        return translate(exc, mode)

    def _finish(result, mode, params, config, features=None):
        spec = check_spec(result, mode)
        if mode not in ("train", "eval"):
            return spec
        return _attach(spec, mode, params, config, features)

    def model_fn_recorded_by_mlrepro(features, labels, mode, params, config):
        # Under a distribution strategy the Estimator runs model_fn through autograph: the
        # user's model_fn is converted as usual, mlrepro's own steps are not.
        kwargs = _arguments(labels, mode, params, config)
        try:
            result = model_fn(features=features, **kwargs)
        except (ValueError, TypeError) as exc:
            translated = _translated(exc, mode)
            if translated is not None:
                raise translated from exc
            raise
        return _finish(result, mode, params, config, features)

    def _attach(spec, mode, params, config, features=None):
        model_dir = getattr(config, "model_dir", None)
        if not model_dir:
            raise MlreproError("the Estimator has no model_dir: give one, e.g. "
                               "tf.estimator.Estimator(model_fn, config=mlrepro.estimator."
                               "run_config(model_dir=...))")
        role = binding.role_of(config)
        if role == binding.WORKER:
            return spec  # only the chief (and a separate evaluator) record
        run = binding.bind(model_dir, project=project, store=store, name=name, tags=tags,
                           role=role, resume=resume if mode == "train" else None,
                           params=params, config=config)
        binding.record_config(run, params, config)
        from mlrepro._estimator.hooks import EvalRecorder, TrainRecorder

        if mode == "train":
            from mlrepro._estimator import autocapture

            fetch = autocapture.capture(run, load_tf().compat.v1.get_default_graph(), features)
            every = every_n_steps or getattr(config, "save_summary_steps", None) \
                or DEFAULT_EVERY_N_STEPS
            hook = TrainRecorder(
                run, loss=spec.loss, every_n_steps=every, tensors={**fetch, **wanted},
                model_dir=model_dir,
                checkpoints=checkpoints,
                save_steps=getattr(config, "save_checkpoints_steps", None),
                resync=bool(getattr(config, "num_ps_replicas", 0)))
            run.log_params({"mlrepro.every_n_steps": every, "mlrepro.checkpoints": checkpoints},
                           auto=True)
            return spec._replace(training_chief_hooks=list(spec.training_chief_hooks) + [hook])
        eval_name = eval_name_from_stack()
        hook = EvalRecorder(run, prefix=f"eval_{eval_name}/" if eval_name else "eval/")
        final = spec._replace(evaluation_hooks=list(spec.evaluation_hooks) + [hook])
        hook.spec = final
        return final

    tf = load_tf()
    _arguments = tf.autograph.experimental.do_not_convert(_arguments)
    _translated = tf.autograph.experimental.do_not_convert(_translated)
    _finish = tf.autograph.experimental.do_not_convert(_finish)
    model_fn_recorded_by_mlrepro.__doc__ = getattr(model_fn, "__doc__", None)
    model_fn_recorded_by_mlrepro.mlrepro_wrapped = model_fn
    return model_fn_recorded_by_mlrepro


def _parameters(fn):
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
