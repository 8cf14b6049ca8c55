"""MoGA mobile networks: Table-2 specs, one builder, safe weights, exporters and evaluators."""
from .builder import SpecNet
from .inference import predict
from .registry import create_model, get_pretrained_cfg, list_models
from .specs import Row, Spec, SpecError, from_choices, load_spec, to_choices

__all__ = ["Row", "Spec", "SpecError", "SpecNet", "create_model", "from_choices",
           "get_pretrained_cfg", "list_models", "load_spec", "predict", "to_choices"]
__version__ = "0.1.0"
