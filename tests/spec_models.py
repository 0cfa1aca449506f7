"""Plain Keras U-Nets built the way the paper's fixed-size reference code builds them.

Fixed 572 x 572 input, hard-coded ``Cropping2D`` amounts, concatenation ``[crop, up]``,
default layer names: exactly what users of that code save with ``model.save``.
"""

from __future__ import annotations


def spec_unet(base: int = 64, classes: int = 2, channels: int = 1, swap_concat: bool = False):
    import keras
    from keras import layers

    inputs = layers.Input((572, 572, channels))
    x, skips = inputs, []
    for level in range(4):
        x = layers.Conv2D(base * 2**level, 3, activation="relu")(x)
        x = layers.Conv2D(base * 2**level, 3, activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Conv2D(base * 16, 3, activation="relu")(x)
    x = layers.Conv2D(base * 16, 3, activation="relu")(x)
    for level, crop in zip(reversed(range(4)), (4, 16, 40, 88)):
        up = layers.Conv2DTranspose(base * 2**level, 2, strides=(2, 2))(x)
        cropped = layers.Cropping2D(crop)(skips[level])
        pair = [up, cropped] if swap_concat else [cropped, up]
        x = layers.Concatenate(axis=3)(pair)
        x = layers.Conv2D(base * 2**level, 3, activation="relu")(x)
        x = layers.Conv2D(base * 2**level, 3, activation="relu")(x)
    x = layers.Conv2D(classes, 1)(x)
    outputs = layers.Softmax(axis=-1)(x)
    return keras.Model(inputs, outputs)
