"""MoGA mobile networks: Table-2 specs, one builder, safe weights, exporters and evaluators."""
import os as _os

# TensorFlow (Keras/TFLite export, TFLite tables) logs INFO lines on import; keep the user's
# terminal for our output unless they asked for TensorFlow's.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .builder import SpecNet
from .inference import predict
from .registry import create_model, get_pretrained_cfg, list_models
from .specs import Row, Spec, SpecError, from_choices, load_spec, to_choices

__all__ = ["Row", "Spec", "SpecError", "SpecNet", "create_model", "from_choices",
           "get_pretrained_cfg", "list_models", "load_spec", "predict", "to_choices"]
__version__ = "0.1.0"
