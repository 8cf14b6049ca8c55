"""torch.hub entry points, one per registered model, generated from the registry (as timm does):
``torch.hub.load("OWNER/REPO", "moga_a", weights=...)`` or ``source="local"`` from a clone.

``weights`` takes what ``moga_zoo.create_model`` takes: a registered tag, a local file,
``hf-hub:owner/repo[@rev]`` or an http(s) URL; ``pretrained=True`` means the model's default tag
(``imagenet``). Other keyword arguments (num_classes, features_only, out_indices, drop_rate,
drop_path_rate, input_size) go to the builder.
"""
dependencies = ["torch", "numpy", "PIL", "safetensors"]

from moga_zoo.registry import hub_entrypoints as _entrypoints

globals().update(_entrypoints())
