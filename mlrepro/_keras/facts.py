"""The facts the resume judgement (`exactness`) needs, gathered from a live `fit`."""

from __future__ import annotations

from typing import Any

from mlrepro._keras import (cbstate, chief, datafp, exactness, fitargs, flavour, modelscan,
                            order, pipeline, seeding)
from mlrepro._keras.params import all_layers


def gather(model: Any, fit: fitargs.FitCall, pipes: dict, seed_record: dict | None = None,
           scan: "modelscan.ModelScan | None" = None, callbacks: "list | None" = None,
           pipeline_state: int = 0) -> exactness.Facts:
    """Facts about the model, the input, the other callbacks and the process, for
    `exactness.judge`. `pipeline_state`: how many of the pipeline's variables the
    checkpoint saves."""
    seed_record = seed_record or {}
    desc = flavour.describe(model)
    facts = exactness.Facts(flavour=desc["flavour"], backend=desc.get("backend") or "tensorflow")
    if facts.backend == "tensorflow":
        facts.op_determinism = bool(seeding.op_determinism())
    else:  # TensorFlow's switch does not apply; XLA on CPU is deterministic
        facts.op_determinism = bool(seed_record.get("deterministic"))
    fallback_seed = seed_record.get("seed")
    facts.accelerator = seeding.accelerator()
    seed = seeding.global_seed()
    facts.seed = seed if seed is not None else fallback_seed
    x = fit.x
    if pipeline.is_dataset(x):
        facts.input_kind = "tf.data"
        pipe = pipes.get("train") or pipeline.Pipeline()
        facts.ordered = order.is_ordered(x, pipe.ops)
        facts.reshuffles = pipe.reshuffles
        facts.unseeded_shuffle = pipe.unseeded_shuffle
        facts.python_ops = pipe.python
        # Seeded legacy random ops in a dataset function restart with each iterator, so
        # every epoch (and a restarted process) draws the same: only unseeded ones count.
        facts.random_ops = sorted(set(pipe.unseeded_random) | {
            op for op in pipe.random if op.endswith("Dataset")})
        facts.pipeline_writes = list(pipe.writes)
        facts.parallel_writes = pipe.parallel_writes
        facts.pipeline_state_saved = int(pipeline_state)
        card = pipeline.cardinality(x)
        facts.batches_per_epoch = card if card >= 0 else None
    elif datafp.is_keras_sequence(x):
        facts.input_kind = "sequence"
    elif x is not None and datafp.is_arrayish(x):
        facts.input_kind = "arrays"
        n = fitargs.leading_dimension(x)
        batch = fit.arguments.get("batch_size") or 32
        facts.batches_per_epoch = -(-n // int(batch)) if n else None
    else:
        facts.input_kind = "python" if x is not None else "none"
    facts.shuffle = fit.arguments.get("shuffle", True)
    facts.steps_per_epoch = fit.arguments.get("steps_per_epoch")
    facts.multi_worker = chief.multi_worker(model)
    if desc["flavour"] == flavour.TF_KERAS:
        facts.legacy_rng_layers = legacy_rng_layers(model)
    if scan is not None:
        facts.model_random = list(scan.random)
        facts.model_state_saved = len(scan.variables)
        facts.model_scan_error = scan.error
    others = cbstate.others(list(callbacks or []))
    facts.callbacks_saved = [type(cb).__name__ for _, cb in others
                             if cbstate.kind(cb) == "stateful"]
    facts.callbacks_watched = [type(cb).__name__ for _, cb in others
                               if cbstate.kind(cb) == "unknown"]
    facts.callback_notes = cbstate.notes(list(callbacks or []))
    return facts


def legacy_rng_layers(model: Any) -> list[str]:
    """tf_keras layers drawing from legacy stateful random ops (state no checkpoint holds)."""
    out = []
    for layer in all_layers(model):
        gen = getattr(layer, "_random_generator", None)
        if gen is not None and getattr(gen, "_rng_type", None) == "legacy_stateful" \
                and float(getattr(layer, "rate", 1.0) or 0.0) > 0.0:
            out.append(type(layer).__name__)
    return out
