"""Registers the built-in families, in the order reports list them."""
from ..registry import register, register_parametric
from . import cross_entropy as ce
from .batchnorm import BATCHNORM, BATCHNORM_BACKWARD
from .softmax import SOFTMAX, SOFTMAX_BACKWARD, SOFTMAX_JACOBIAN

register(SOFTMAX, SOFTMAX_JACOBIAN, SOFTMAX_BACKWARD)
register_parametric("cross_entropy", ce.cross_entropy, ce.PARAMS)
register_parametric("cross_entropy_backward", ce.cross_entropy_backward, ce.PARAMS)
register(BATCHNORM, BATCHNORM_BACKWARD)
