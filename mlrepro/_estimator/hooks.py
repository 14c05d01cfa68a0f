"""The SessionRunHooks that translate Estimator training and evaluation into `Run` calls.

`TrainRecorder` (a chief-only training hook) fetches the loss and the chosen
tensors on every N-th step only: on the steps in between `before_run` returns
nothing and `after_run` adds one to a counter, so the Session fetches nothing
extra. It also records each checkpoint the Estimator writes and the global step.
`EvalRecorder` reads the evaluation's final metric values when it ends and logs
them at the evaluated checkpoint's global step.
"""

from __future__ import annotations

import time
from typing import Mapping

import tensorflow as tf

from mlrepro._estimator import binding
from mlrepro._estimator.checkpoints import CheckpointRecorder
from mlrepro._estimator.validate import ModelFnError

TENSORS_ATTR = "_mlrepro_logged_tensors"        # (name, tensor) pairs added by log_tensor()
CHECK_SECONDS = 1.0                             # at most one stat of the state file a second
END_FLUSH_SECONDS = 30.0


def log_tensor(name: str, tensor) -> None:
    """Ask the training hook to record `tensor` (a scalar) as metric `name` every N steps."""
    # Kept on the graph object, not in a graph collection: collections are written into
    # every checkpoint's MetaGraph, where a (name, tensor) pair cannot be serialised.
    graph = getattr(tensor, "graph", None) or tf.compat.v1.get_default_graph()
    pairs = getattr(graph, TENSORS_ATTR, None)
    if pairs is None:
        pairs = []
        setattr(graph, TENSORS_ATTR, pairs)
    pairs.append((str(name), tensor))


def resolve_tensors(graph, wanted: Mapping[str, object]) -> dict:
    """Metric name -> scalar tensor, from tensor names given to wrap_model_fn and log_tensor()."""
    out: dict = {}
    for name, ref in list(wanted.items()) + list(getattr(graph, TENSORS_ATTR, [])):
        if name in out:
            continue  # the first replica's tensor under a distribution strategy
        tensor = ref
        if isinstance(ref, str):
            tensor_name = ref if ":" in ref else ref + ":0"
            try:
                tensor = graph.get_tensor_by_name(tensor_name)
            except (KeyError, ValueError) as exc:
                raise ModelFnError(
                    f"no tensor named {tensor_name!r} (metric {name!r}) in the TRAIN graph: name "
                    f"one your model_fn creates, e.g. tf.identity(x, name={ref.split(':')[0]!r}), "
                    "or call mlrepro.estimator.log_tensor(name, x) inside model_fn") from exc
        shape = getattr(tensor, "shape", None)
        if shape is not None and shape.rank not in (None, 0) and shape.num_elements() != 1:
            raise ModelFnError(f"tensor {getattr(tensor, 'name', ref)!r} (metric {name!r}) has "
                               f"shape {shape}, not a scalar: log a scalar such as "
                               "tf.reduce_mean(x)")
        out[name] = tensor
    return out


class TrainRecorder(tf.compat.v1.train.SessionRunHook):
    """Records loss and chosen tensors every N steps, checkpoints and the global step.

    Args:
        run: the `mlrepro.Run` of the model_dir.
        loss: the EstimatorSpec's loss (the reduced loss is used under a distribution).
        every_n_steps: record on steps that are multiples of this.
        tensors: metric name -> tensor or tensor name, recorded with the loss.
        model_dir: the Estimator's model_dir (checkpoints are read from it).
        checkpoints: "all", "final" or "none".
        save_steps: the RunConfig's checkpoint cadence in steps, if any.
        resync: read the global step before each record (other workers move it).
    """

    def __init__(self, run, *, loss, every_n_steps: int, tensors: Mapping, model_dir: str,
                 checkpoints: str = "all", save_steps: int | None = None, resync: bool = False):
        self.run = run
        self.every = max(1, int(every_n_steps))
        self._loss = loss
        self._wanted = dict(tensors)
        self.model_dir = model_dir
        self.checkpoints = checkpoints
        self.save_steps = save_steps or None
        self.resync = resync
        self.fetches_made = 0
        self._due = False
        self._step = 0
        self._next_due = 0
        self._last = None
        self._last_check = 0.0
        self._start_step = 0
        self._ckpt = None
        self._unrecordable: set[str] = set()

    def begin(self):
        graph = tf.compat.v1.get_default_graph()
        self._gs = tf.compat.v1.train.get_global_step()
        losses = graph.get_collection(tf.compat.v1.GraphKeys.LOSSES)
        loss = losses[-1] if losses else self._loss  # the Estimator adds its (reduced) loss last
        self._fetches = {"loss": loss, **resolve_tensors(graph, self._wanted)}
        self._ckpt = CheckpointRecorder(self.run, self.model_dir, self.checkpoints)

    def after_create_session(self, session, coord):
        try:
            self._step = self._start_step = int(session.run(self._gs))
        except Exception as exc:  # noqa: BLE001
            self.run.warn(f"cannot read the global step ({exc!r}); steps count from 0")
        self._next_due = self._step
        self._last_check = time.monotonic()
        self.run.event("train_begin", step=self._step)
        binding.update_section(self.run, global_step=self._step)
        if self._ckpt.state_changed():
            self._ckpt.record_new()

    def before_run(self, run_context):
        if self._step < self._next_due:
            return None
        if self.resync:
            try:
                self._step = int(run_context.session.run(self._gs))
            except Exception:  # noqa: BLE001 - keep the counted step
                pass
        self._due = True
        self.fetches_made += 1
        return tf.compat.v1.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        if self._due:
            self._due = False
            self._record(run_values.results)
            self._next_due = (self._step // self.every + 1) * self.every
        self._step += 1
        if self.checkpoints == "all":
            now = time.monotonic()
            if (self.save_steps and self._step % self.save_steps == 0) or \
                    now - self._last_check >= CHECK_SECONDS:
                self._last_check = now
                if self._ckpt.state_changed():
                    self._ckpt.record_new()

    def _record(self, results) -> None:
        try:
            metrics = {}
            for name, value in results.items():
                try:
                    metrics[name] = float(value)
                except (TypeError, ValueError) as exc:
                    if name not in self._unrecordable:
                        self._unrecordable.add(name)
                        self.run.warn(f"{name} at step {self._step} is not a number "
                                       f"({exc}); it is not recorded")
            now = time.perf_counter()
            if self._last is not None and now > self._last[1] and self._step > self._last[0]:
                metrics["steps_per_sec"] = (self._step - self._last[0]) / (now - self._last[1])
            self._last = (self._step, now)
            self.run.log_metrics(metrics, step=self._step)
        except Exception as exc:  # noqa: BLE001 - tracking never stops training
            self.run.warn(f"loss at step {self._step} not recorded: {exc!r}")

    def end(self, session):
        try:
            step = int(session.run(self._gs))
        except Exception:  # noqa: BLE001
            step = self._step
        if step != self._step and not self.resync:
            self.run.event("step_count_drift", counted=self._step, global_step=step)
        self._ckpt.state_changed()
        self._ckpt.record_new(final=True)
        binding.update_section(self.run, global_step=step)
        self.run.event("train_end", step=step, start_step=self._start_step)
        self.run.flush(END_FLUSH_SECONDS)


class EvalRecorder(tf.compat.v1.train.SessionRunHook):
    """Logs an evaluation's final metric values as `<prefix><metric>` at the global step.

    Args:
        run: the `mlrepro.Run` of the model_dir.
        prefix: "eval/" or, for `evaluate(name="test")`, "eval_test/".
    """

    def __init__(self, run, prefix: str = "eval/"):
        self.run = run
        self.prefix = prefix
        self.spec = None  # set to the final EstimatorSpec: the Estimator adds its loss metric to it

    def begin(self):
        ops = dict(getattr(self.spec, "eval_metric_ops", None) or {})
        self._values = {name: value[0] for name, value in ops.items()
                        if isinstance(value, tuple) and len(value) == 2}
        self._gs = tf.compat.v1.train.get_global_step()

    def end(self, session):
        try:
            fetched = session.run({"values": self._values, "step": self._gs})
            step = int(fetched["step"])
            metrics, skipped = {}, []
            for name, value in fetched["values"].items():
                try:
                    metrics[self.prefix + name] = float(value)
                except (TypeError, ValueError):
                    skipped.append(name)
            self.run.log_metrics(metrics, step=step)
            self.run.event("evaluation", step=step, prefix=self.prefix, metrics=metrics,
                           skipped=skipped)
            binding.update_section(self.run, last_evaluation={"step": step,
                                                              "prefix": self.prefix})
            self.run.flush(END_FLUSH_SECONDS)
        except Exception as exc:  # noqa: BLE001 - tracking never fails an evaluation
            self.run.warn(f"evaluation metrics not recorded: {exc!r}")
