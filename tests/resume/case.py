"""One case of the resume conformance matrix, trained in a forked child of a fork server.

Importing TensorFlow costs ~10-20 s on a loaded machine, so the matrix imports it
once: `case.py --serve` imports TensorFlow and Keras (tf_keras when
MATRIX_FLAVOUR=tf_keras), then reads one JSON argument list per line on stdin and
forks a fresh child per line that trains one run (nothing TensorFlow-related ran
in the server before the fork, so every child starts as a fresh process would).
It answers `PID <pid>` per line. The child writes its log to --log and, when it
ends, its exit code to `<log>.rc`; the server reaps every child and writes its
exit status (negative: the signal that ended it) to `<log>.exit`.

A child's arguments: CASE --mode bare|callback --out weights.bin [--store S
--checkpoint C] [--kill-at EPOCH:BATCH --marker FILE]. Each case is code shaped
like users' code (the TF tutorial augmentation, keras-io callbacks), tiny so the
matrix runs in minutes. `bare` trains with the same seeds and no ReproCallback
(the recorder must not change training); `callback` adds it. With --kill-at the
child writes the marker at that batch and waits for the test's SIGKILL; with
--sigterm-at EPOCH:BATCH it sends itself SIGTERM as that batch begins (the
preemption notice), and --every / --log-every set checkpoint_every and
log_every_n_steps.
"""

import argparse
import json
import os
import signal
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
LEGACY = os.environ.get("MATRIX_FLAVOUR") == "tf_keras"
if LEGACY:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras as keras
else:
    import keras
import numpy as np
import tensorflow as tf

import mlrepro.keras
from mlrepro.capture.seeds import apply_seed

parser = argparse.ArgumentParser()
parser.add_argument("case")
parser.add_argument("--mode", choices=("bare", "callback"), required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--store")
parser.add_argument("--checkpoint")
parser.add_argument("--kill-at")
parser.add_argument("--marker")
parser.add_argument("--sigterm-at")
parser.add_argument("--every", default="epoch")
parser.add_argument("--log-every", type=int, default=4)
parser.add_argument("--step-sleep", type=float, default=0.0)
parser.add_argument("--keep", type=int, default=2)
parser.add_argument("--stall", action="store_true")   # after the SIGTERM, no next step
parser.add_argument("--env", action="append", default=[])   # NAME=VALUE, set in the child


def train(argv):
    args = parser.parse_args(argv)
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value
    SEED = 7
    EPOCHS = 4
    N, BATCH = 128, 16      # 8 batches per epoch

    callback = None
    if args.mode == "callback":
        callback = mlrepro.keras.ReproCallback(
            project="matrix", store=args.store, seed=SEED, deterministic=True,
            log_every_n_steps=args.log_every, checkpoint=args.checkpoint, export=False,
            tensorboard=False, keep_checkpoints=args.keep,
            checkpoint_every=int(args.every) if args.every.isdigit() else args.every)
    else:
        apply_seed(SEED, True)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, size=N)
    case = args.case

    class Noisy(keras.layers.Layer):
        """A layer adding noise with tf.random.normal in call (a stateful random op)."""

        def call(self, inputs, training=None):
            if training:
                return inputs + tf.random.normal(tf.shape(inputs), stddev=0.1)
            return inputs

    class GeneratorNoise(keras.layers.Layer):
        """A layer adding noise from a tf.random.Generator it keeps (state in a variable)."""

        def __init__(self):
            super().__init__()
            self.generator = tf.random.Generator.from_seed(13)

        def call(self, inputs, training=None):
            if training:
                return inputs + self.generator.normal(tf.shape(inputs), stddev=0.1)
            return inputs

    head = []
    if case == "layer_random_normal":
        head = [Noisy()]
    elif case == "layer_generator":
        head = [GeneratorNoise()]
    elif case == "preprocessing_in_model":
        head = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomTranslation(0.1, 0.1)]
    model = keras.Sequential([
        keras.Input((6, 6, 1)), *head,
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.0 if LEGACY else 0.3),
        keras.layers.Dense(3),
    ])
    lr = 0.01
    if case == "lr_schedule":
        lr = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=5, decay_rate=0.7)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    fit = dict(epochs=EPOCHS, verbose=0)
    slices = tf.data.Dataset.from_tensor_slices((x, y))
    fixed = slices.shuffle(N, seed=5, reshuffle_each_iteration=False)
    extra_callbacks = []
    if case == "generator_map":        # the TF tutorial's augmentation with a tf.random.Generator
        gen = tf.random.Generator.from_seed(3)

        def augment(image, label):
            return image + gen.normal(tf.shape(image), stddev=0.1), label

        fit["x"] = fixed.map(augment).batch(BATCH)
    elif case == "random_flip_map":    # a Keras preprocessing layer mapped over the pipeline
        flip = keras.layers.RandomFlip("horizontal")
        fit["x"] = fixed.batch(BATCH).map(lambda a, b: (flip(a), b))
    elif case == "reshuffle_random":   # unseeded reshuffling + random ops
        fit["x"] = slices.shuffle(N).map(
            lambda a, b: (tf.image.random_flip_left_right(a, seed=None), b)).batch(BATCH)
    elif case == "seeded_fixed_flip":  # seeded fixed shuffle + a legacy random op (replayed)
        fit["x"] = fixed.map(lambda a, b: (tf.image.random_flip_left_right(a), b)).batch(BATCH)
    elif case == "numpy_validation_split":
        fit.update(x=x, y=y, batch_size=BATCH, validation_split=0.25)
    elif case == "deterministic_dataset":   # mlrepro's own seeded order
        fit["x"] = mlrepro.keras.deterministic_dataset(x, y, batch_size=BATCH, seed=5)
    elif case in ("layer_random_normal", "layer_generator", "preprocessing_in_model",
                  "lr_schedule", "two_kills", "numpy"):
        fit.update(x=x, y=y, batch_size=BATCH)
    elif case == "early_stopping":     # stops when patience runs out: 3 epochs, not 4
        fit.update(x=x, y=y, batch_size=BATCH)
        extra_callbacks.append(keras.callbacks.EarlyStopping(monitor="loss", patience=2,
                                                             min_delta=10.0))
    elif case == "reduce_lr":
        fit.update(x=x, y=y, batch_size=BATCH)
        extra_callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1,
                                                                 min_delta=10.0, factor=0.5))
    elif case == "shipped_callbacks":  # the rest of what Keras ships, side by side
        fit.update(x=x, y=y, batch_size=BATCH, validation_split=0.25)
        here = os.path.dirname(os.path.abspath(args.out))
        extra_callbacks += [
            keras.callbacks.ModelCheckpoint(os.path.join(here, "best.keras"),
                                            save_best_only=True),
            keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate * 0.9),
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.CSVLogger(os.path.join(here, "log.csv"), append=True),
            keras.callbacks.BackupAndRestore(os.path.join(here, "backup")),
        ]
    elif case == "tf_keras_reduce_lr":
        fit["x"] = fixed.batch(BATCH)
        extra_callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1,
                                                                 min_delta=10.0, factor=0.5))
    else:
        sys.exit(f"unknown case {case}")

    KILL = {}  # the kill switch keeps its state here, not on itself (no callback state)

    class KillSwitch(keras.callbacks.Callback):
        """Stop dead in the middle of an epoch so the test can SIGKILL this process."""

        def on_epoch_begin(self, epoch, logs=None):
            KILL["epoch"] = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (KILL.get("epoch"), batch) == KILL["at"]:
                time.sleep(0.6)  # let the run's writer flush what was logged
                with open(args.marker, "w") as fh:
                    fh.write(str(os.getpid()))
                while True:
                    time.sleep(1)

    class Preemption(keras.callbacks.Callback):
        """SIGTERM to this process as a given batch begins (Keras keeps async dispatch:
        this callback has no batch-end hook)."""

        def on_epoch_begin(self, epoch, logs=None):
            KILL["epoch"] = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if args.step_sleep:
                time.sleep(args.step_sleep)
            if args.sigterm_at and (KILL.get("epoch"), batch) == KILL["term"]:
                os.kill(os.getpid(), signal.SIGTERM)
                while args.stall:   # a step that never ends (a hung collective, I/O)
                    time.sleep(1)

    callbacks = ([callback] if callback else []) + extra_callbacks
    if args.sigterm_at or args.step_sleep:
        if args.sigterm_at:
            KILL["term"] = tuple(int(v) for v in args.sigterm_at.split(":"))
        callbacks.append(Preemption())
    if args.kill_at:
        KILL["at"] = tuple(int(v) for v in args.kill_at.split(":"))
        callbacks.append(KillSwitch())
    model.fit(callbacks=callbacks, **fit)
    with open(args.out, "wb") as fh:
        for w in model.get_weights():
            fh.write(np.ascontiguousarray(w).tobytes())
    if callback is not None:
        print("RUN", callback.run.id, flush=True)


def serve():
    logs = {}

    def reap(signum, frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            log = logs.pop(pid, None)
            if log is not None:
                with open(log + ".exit", "w") as fh:
                    fh.write(str(os.waitstatus_to_exitcode(status)))

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        job = json.loads(line)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})   # reap after logs[pid]
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            rc = 1
            try:
                fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                train(job["argv"])
                rc = 0
            except BaseException:  # noqa: BLE001 - the log tells the test
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                with open(job["log"] + ".rc", "w") as fh:
                    fh.write(str(rc))
                os._exit(rc)
        logs[pid] = job["log"]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        print("PID", pid, flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        train(sys.argv[1:])
