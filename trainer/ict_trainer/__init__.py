"""ict's trainer: the blog's three recipes on tf.data and Keras 3, local folders or S3."""

__version__ = "0.1.0"
