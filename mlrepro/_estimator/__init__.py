"""Internals of `mlrepro.estimator` (tf.estimator, TensorFlow <= 2.15).

One concept per module: `binding` (which run a model_dir belongs to), `hooks`
(the SessionRunHooks), `checkpoints`, `validate` (what a model_fn may return),
`wrap` (wrap_model_fn), `specs` (EstimatorSpecs from logits), `config`
(run_config) and `export` (SavedModels). Every module here may import
TensorFlow; `mlrepro.estimator` imports them lazily.
"""
