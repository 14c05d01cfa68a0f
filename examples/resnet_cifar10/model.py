"""The CIFAR-10 ResNets of He et al. 2016 ("Deep Residual Learning", section 4.2).

ResNet-(6n+2), version 1 (conv-BN-ReLU, addition before the last ReLU): a 3x3
conv with 16 filters, then three stages of n basic blocks with 16, 32 and 64
filters on 32x32, 16x16 and 8x8 maps, global average pooling and a 10-way
dense layer. Depth 20, 32, 44, 56 and 110 are the paper's (n = 3, 5, 7, 9, 18).

Shortcuts are option A by default, as in the paper's CIFAR experiments: identity,
and where the stage changes, the input subsampled by 2 and zero-padded to the
new number of channels (no parameters). Option B (a strided 1x1 convolution and
batch normalisation where the stage changes) is there for comparison.

Weight decay is an L2 penalty on conv and dense kernels whose gradient is
`weight_decay * w`, which is what the paper's "weight decay of 0.0001" means
(Keras' `l2(c)` has gradient `2 c w`, so c = weight_decay / 2).

The model is built with `tf.keras`: Keras 3 on TensorFlow 2.16+, tf_keras when
`TF_USE_LEGACY_KERAS=1` (the multi-worker lane), Keras 2 on TensorFlow 2.15
(the Estimator lane).

Example:
    >>> model = build_resnet(20)
    >>> trainable_parameters(model)
    269722
"""

from __future__ import annotations

import tensorflow as tf

keras = tf.keras

DEPTHS = (20, 32, 44, 56, 110)
SHORTCUTS = ("A", "B")
STAGE_FILTERS = (16, 32, 64)
NUM_CLASSES = 10

# Table 6 of the paper: test accuracy (%) on CIFAR-10 with the full recipe
# (ResNet-110: best of 5 runs; the mean was 93.39 +/- 0.16) and parameter counts.
PAPER_ACCURACY = {20: 91.25, 32: 92.49, 44: 92.83, 56: 93.03, 110: 93.57}
PAPER_PARAMETERS = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M"}


@keras.utils.register_keras_serializable(package="resnet_cifar10")
class ZeroPadShortcut(keras.layers.Layer):
    """The option-A shortcut across stages: subsample by `stride`, zero-pad channels to `filters`.

    Args:
        filters: channels of the output (the input's channels plus zeros, split
            evenly before and after, as in the common reimplementations).
        stride: spatial subsampling (2 where a stage begins).

    Example:
        >>> ZeroPadShortcut(32)(tf.zeros((1, 32, 32, 16))).shape
        TensorShape([1, 16, 16, 32])
    """

    def __init__(self, filters: int, stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.stride = int(stride)

    def call(self, inputs):
        x = inputs[:, ::self.stride, ::self.stride, :]
        extra = self.filters - x.shape[-1]
        if extra < 0:
            raise ValueError(f"ZeroPadShortcut cannot shrink {x.shape[-1]} channels to "
                             f"{self.filters}: use an option-B shortcut instead")
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else (size + self.stride - 1) // self.stride

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


def blocks_per_stage(depth: int) -> int:
    """n in depth = 6n + 2; raises ValueError for other depths."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth {depth} is not 6n+2 (e.g. {', '.join(map(str, DEPTHS))}): "
                         "pick one of those, or 8 for a tiny test model")
    return (depth - 2) // 6


def build_resnet(depth: int = 20, *, shortcut: str = "A", weight_decay: float = 1e-4,
                 num_classes: int = NUM_CLASSES, input_shape=(32, 32, 3),
                 name: str | None = None) -> "keras.Model":
    """ResNet-`depth` for 32x32 images; outputs logits (no softmax).

    Args:
        depth: 6n+2 layers (20, 32, 44, 56, 110 in the paper; 8 works for quick tests).
        shortcut: "A" (identity + zero padding, the paper's CIFAR choice) or "B" (projection).
        weight_decay: the paper's weight decay (gradient `weight_decay * w` on kernels).
        num_classes: outputs of the last layer.
        input_shape: one image, channels last (pixels already normalised).
        name: the Keras model name (default `resnet<depth>`).

    Example:
        >>> model = build_resnet(56)
        >>> model.output_shape
        (None, 10)
    """
    shortcut = str(shortcut).upper()
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut {shortcut!r} must be one of {SHORTCUTS}")
    n = blocks_per_stage(depth)
    reg = keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None

    def conv(x, filters, stride, kernel=3, label=None):
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same",
                                   use_bias=False, kernel_initializer="he_normal",
                                   kernel_regularizer=reg, name=label)(x)

    def bn(x, label=None):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=label)(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = conv(inputs, STAGE_FILTERS[0], 1, label="stem_conv")
    x = keras.layers.ReLU(name="stem_relu")(bn(x, "stem_bn"))
    for stage, filters in enumerate(STAGE_FILTERS):
        for block in range(n):
            label = f"stage{stage + 1}_block{block + 1}"
            stride = 2 if stage > 0 and block == 0 else 1
            y = keras.layers.ReLU(name=f"{label}_relu1")(
                bn(conv(x, filters, stride, label=f"{label}_conv1"), f"{label}_bn1"))
            y = bn(conv(y, filters, 1, label=f"{label}_conv2"), f"{label}_bn2")
            if stride != 1 or x.shape[-1] != filters:
                if shortcut == "A":
                    x = ZeroPadShortcut(filters, stride, name=f"{label}_shortcut")(x)
                else:
                    x = bn(conv(x, filters, stride, kernel=1, label=f"{label}_shortcut_conv"),
                           f"{label}_shortcut_bn")
            x = keras.layers.Add(name=f"{label}_add")([x, y])
            x = keras.layers.ReLU(name=f"{label}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="he_normal",
                                 kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def trainable_parameters(model) -> int:
    """The number of trainable scalars (the paper counts these)."""
    return int(sum(int(tf.size(w)) for w in model.trainable_weights))
