"""Registers the built-in families, in the order reports list them."""
from ..registry import register, register_parametric
from . import cross_entropy as ce
from . import batchnorm as bn
from . import bce
from . import layer_norm as ln
from . import log_softmax as ls
from . import rms_norm as rms
from . import softmax_t as st
from .softmax import SOFTMAX, SOFTMAX_BACKWARD, SOFTMAX_JACOBIAN

register(SOFTMAX, SOFTMAX_JACOBIAN, SOFTMAX_BACKWARD)
register_parametric("cross_entropy", ce.cross_entropy, ce.PARAMS)
register_parametric("cross_entropy_backward", ce.cross_entropy_backward, ce.PARAMS)
register_parametric("batchnorm", bn.batchnorm, bn.PARAMS)
register_parametric("batchnorm_backward", bn.batchnorm_backward, bn.PARAMS)
register_parametric("batchnorm_running_stats", bn.batchnorm_running_stats, bn.RUNNING_PARAMS)
register_parametric("batchnorm_eval", bn.batchnorm_eval, (bn.PARAMS[1],))
register(ls.LOG_SOFTMAX, ls.LOG_SOFTMAX_BACKWARD)
register(st.SOFTMAX_T, st.SOFTMAX_T_BACKWARD)
register(bce.BCE_WITH_LOGITS, bce.BCE_WITH_LOGITS_BACKWARD)
register(ln.LAYER_NORM, ln.LAYER_NORM_BACKWARD)
register(rms.RMS_NORM, rms.RMS_NORM_BACKWARD)
