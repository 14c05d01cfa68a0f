"""What one `fit` adds to its checkpoints beyond the model, and the checks of the resume claim.

`ReproCallback` predicts in `on_train_begin` whether a resume will be exact
(`exactness.judge`). This module holds what that prediction rests on and checks
it while training runs:

- the random state found in the input pipeline and the model (generator and
  SeedGenerator variables), saved in every checkpoint and restored;
- the other callbacks' state (`cbstate`), restored at the first `on_epoch_begin`
  and checked against the digest the checkpoint stored;
- at every checkpoint and at the end: whether an unknown callback changed, and
  whether the train function Keras actually traced draws from stateful random
  ops. A prediction that no longer holds turns `resume.exact` false, with the
  reason, and `resume.check.held` says so.
"""

from __future__ import annotations

from typing import Any

from mlrepro._keras import cbstate, checkpoint, facts, flavour, modelscan, order, pipeline

RESUME_SECTION = "resume"


class ResumeState:
    """The resume facts of one `fit`, from `on_train_begin` to `on_train_end`."""

    def __init__(self) -> None:
        self.scan: modelscan.ModelScan | None = None
        self.callbacks: list = []
        self.pipeline_variables: list = []
        self.pending: dict | None = None      # a restored checkpoint's callback state
        self.watched: dict | None = None
        self.train_function_checked = False
        self.problems: list[str] = []
        self.legacy_rng = False

    @property
    def variables(self) -> list:
        return list(self.pipeline_variables) + list(self.scan.variables if self.scan else [])

    def prepare(self, model: Any, fit: Any) -> None:
        """Find the random state to checkpoint and the callbacks beside ours."""
        callback_list = getattr(fit, "callback_list", None)
        self.callbacks = list(getattr(callback_list, "callbacks", None) or [])
        x = getattr(fit, "x", None)
        if pipeline.is_dataset(x):
            try:
                self.pipeline_variables = [v for v in pipeline.state_variables(x)
                                           if not order.is_epoch_variable(v)]
            except Exception:  # noqa: BLE001 - exactness then says the state was not found
                self.pipeline_variables = []
        self.scan = modelscan.scan(model, x)
        self.legacy_rng = bool(facts.legacy_rng_layers(model)) \
            if flavour.of_model(model) == flavour.TF_KERAS else False

    def read_state(self, model: Any) -> list:
        """The random-state variables' values now (at an epoch end), as saved."""
        return [checkpoint.to_numpy(v) for group, _, v in checkpoint.variables(
            model, self.variables) if group == "state"]

    def checkpoint_extras(self, state_arrays: list | None = None) -> dict:
        """Keyword arguments for `checkpoint.save`."""
        return {"state": self.variables, "state_arrays": state_arrays,
                "callbacks": cbstate.save(self.callbacks)}

    def begin_epoch(self, run: Any, model: Any, epoch: int) -> None:
        """On the first epoch of a resumed attempt put the callbacks' state back (their
        own on_train_begin reset it), check that no other callback's restore overwrote
        ours, then start watching the unknown ones."""
        if self.pending is not None:
            meta, self.pending = self.pending, None
            self._restore_callbacks(run, meta)
            self._recheck_variables(run, model, meta, epoch)
        if self.watched is None:
            self.watched = cbstate.watch(self.callbacks)

    def _recheck_variables(self, run: Any, model: Any, meta: dict, epoch: int) -> None:
        """A callback after ours (BackupAndRestore) may load its own backup in its
        on_train_begin, which resets the SeedGenerator states: assign ours again."""
        if epoch != int(meta["epoch"]) + 1:
            self._fail(run, f"another callback moved the start to epoch {epoch} after "
                            f"mlrepro restored the checkpoint of epoch {meta['epoch']} (a "
                            "BackupAndRestore backup newer than it?), so the state is not "
                            "that checkpoint's: use one of the two")
            return
        if not meta.get("state_digest"):
            return
        targets = checkpoint.variables(model, self.variables)
        now = checkpoint.state_digest([checkpoint.to_numpy(v) for _, _, v in targets])
        if now == meta["state_digest"]:
            return
        again = checkpoint.restore(model, meta["path"], self.variables)
        current = dict((run.section(RESUME_SECTION) or {}).get("restored") or {})
        current.update(reassigned="another callback changed the restored state before the "
                                  "first epoch; mlrepro assigned its checkpoint again",
                       verified=again.get("verified"))
        run.update_section(RESUME_SECTION, restored=current)
        if again.get("verified") is False:
            self._fail(run, "the restored state does not match the digest the checkpoint "
                            "stored")

    def _restore_callbacks(self, run: Any, meta: dict) -> None:
        values = meta.get("callbacks") or {}
        arrays = meta.get("callback_arrays") or {}
        expected = meta.get("callbacks_digest")
        restored = cbstate.restore(self.callbacks, values, arrays)
        now = cbstate.save(self.callbacks)
        verified = cbstate.digest(*now) == expected if expected else None
        current = dict((run.section(RESUME_SECTION) or {}).get("restored") or {})
        current.update(callbacks=restored, callbacks_verified=verified)
        run.update_section(RESUME_SECTION, restored=current)
        if verified is False:
            self._fail(run, "the restored callback state does not match the digest the "
                            "checkpoint stored")

    def check(self, run: Any, model: Any, where: str) -> None:
        """Whether the prediction still holds; records `resume.check`."""
        found = []
        if self.watched is not None:
            found.extend(cbstate.changed(self.watched, self.callbacks))
        if not self.train_function_checked:
            random_ops = modelscan.scan_train_function(model)
            if random_ops is not None:
                self.train_function_checked = True
                known = {f.split(" ")[0] for f in (self.scan.random if self.scan else [])}
                if self.legacy_rng:  # tf_keras' legacy Dropout: already a reason
                    known.add("RandomUniform")
                new = [f for f in random_ops if f.split(" ")[0] not in known]
                if new:
                    found.append("the train function Keras traced draws from stateful random "
                                 f"ops ({'; '.join(new[:5])}) whose position lives in the "
                                 "process: a restarted process starts them again")
        for reason in found:
            self._fail(run, reason)
        run.update_section(RESUME_SECTION, check={"held": not self.problems, "at": where,
                                                  "problems": list(self.problems)})

    def _fail(self, run: Any, reason: str) -> None:
        if reason in self.problems:
            return
        self.problems.append(reason)
        section = dict(run.section(RESUME_SECTION) or {})
        reasons = list(section.get("reasons") or [])
        if reason not in reasons:
            reasons.append(reason)
        run.update_section(RESUME_SECTION, exact=False, reasons=reasons)
