"""The Keras builder: the same spec rows -> a tf.keras model (NHWC), plus a weight copy from torch.

Layer names are the torch module paths with dots as underscores, so ``copy_torch_weights`` maps
every tensor by name and fails loudly on any layer it cannot fill.
"""
from __future__ import annotations

import numpy as np

from ..specs import FEATURE_OPS, Spec

_ACT = {"RE": "relu", "HS": "hard_swish", "R6": "relu6"}


def _keras():
    import sys
    if "keras" not in sys.modules:  # the first import loads TensorFlow, which logs on fd 2
        from ..native_log import quiet_native_info
        with quiet_native_info():
            import keras  # noqa: F401
    return sys.modules["keras"]


def _act(x, nl: str, name: str):
    L = _keras().layers
    if nl == "R6":
        return L.ReLU(6.0, name=name)(x)
    return L.Activation(_ACT[nl], name=name)(x)


def _conv_bn(x, cout, k, s, nl, spec: Spec, name: str, depthwise: bool = False):
    """Pads as the torch model does: TF 'SAME' = Keras 'same'; symmetric k//2 needs explicit
    ZeroPadding2D on strided convs (Keras 'same' would put the extra pixel after)."""
    L = _keras().layers
    opts = spec.options
    if s > 1 and opts.padding == "symmetric" and k > 1:
        x = L.ZeroPadding2D(k // 2, name=f"{name}_pad")(x)
        pad = "valid"
    else:
        pad = "same"
    if depthwise:
        x = L.DepthwiseConv2D(k, s, pad, use_bias=False, name=f"{name}_conv")(x)
    else:
        x = L.Conv2D(cout, k, s, pad, use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(epsilon=opts.bn_eps, momentum=0.9, name=f"{name}_bn")(x)
    return _act(x, nl, f"{name}_act") if nl else x


def add_row(x, r, cin: int, spec: Spec, name: str):
    """One body row (conv, ds or ir) on Keras tensor ``x``."""
    L = _keras().layers
    opts = spec.options
    if r.op == "conv":
        return _conv_bn(x, r.c, r.k, r.s, r.nl, spec, name)
    hidden = cin if r.op == "ds" else r.hidden(cin)
    y = _conv_bn(x, hidden, 1, 1, r.nl, spec, f"{name}_expand") if hidden != cin else x
    y = _conv_bn(y, hidden, r.k, r.s, r.nl, spec, f"{name}_dw", depthwise=True)
    if r.se:
        sq = opts.squeeze_width(hidden)
        g = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(y)
        g = L.Conv2D(sq, 1, name=f"{name}_se_reduce")(g)
        g = _act(g, opts.se_act or r.nl, f"{name}_se_act")
        g = L.Conv2D(hidden, 1, name=f"{name}_se_expand")(g)
        g = L.Activation("hard_sigmoid", name=f"{name}_se_gate")(g)
        y = L.Multiply(name=f"{name}_se_mul")([y, g])
    y = _conv_bn(y, r.c, 1, 1, None, spec, f"{name}_project")
    return L.Add(name=f"{name}_add")([x, y]) if r.op == "ir" and r.s == 1 and cin == r.c else y


def add_head_row(x, r, spec: Spec, name: str):
    """A row after the body: pool, conv_nbn or fc."""
    L = _keras().layers
    if r.op == "pool":
        return L.GlobalAveragePooling2D(keepdims=True, name=name)(x)
    if r.op == "conv_nbn":
        x = L.Conv2D(r.c, 1, use_bias=spec.options.head_bias, name=f"{name}_conv")(x)
        return _act(x, r.nl, f"{name}_act")
    x = L.Flatten(name=f"{name}_flatten")(x)
    x = L.Dropout(spec.options.dropout, name=f"{name}_dropout")(x)
    return L.Dense(r.c, name=name)(x)


def build_keras(spec: Spec, input_size: int = 224, batch_size: int | None = 1):
    """Keras functional model from spec rows; ``batch_size=None`` leaves the batch dynamic."""
    keras = _keras()
    inp = keras.Input((input_size, input_size, spec.in_chans), batch_size=batch_size, name="input")
    x, cin, body, head = inp, spec.in_chans, 0, 0
    for r in spec.rows:
        if r.op in FEATURE_OPS:
            x = add_row(x, r, cin, spec, f"features_{body}")
            body += 1
        elif r.op == "pool":
            x = add_head_row(x, r, spec, "global_pool")
        elif r.op == "conv_nbn":
            x = add_head_row(x, r, spec, f"head_convs_{head}")
            head += 1
        else:
            x = add_head_row(x, r, spec, "classifier")
        cin = r.c or cin
    return keras.Model(inp, x, name=spec.name)


def row_model(spec: Spec, index: int, in_shape: tuple[int, int, int]):
    """A Keras model of row ``index`` alone at input (C, H, W), batch 1 (latency tables)."""
    keras = _keras()
    c, h, w = in_shape
    r = spec.rows[index]
    inp = keras.Input((h, w, c), batch_size=1, name="input")
    out = add_row(inp, r, c, spec, "row") if r.op in FEATURE_OPS else add_head_row(inp, r, spec, "row")
    return keras.Model(inp, out)


def copy_torch_weights(keras_model, torch_model) -> None:
    """Every Keras layer with weights is filled from the torch module of the same path."""
    import torch
    mods = dict(torch_model.named_modules())
    filled = set()
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        path = layer.name.replace("_", ".").replace("head.convs", "head_convs")  # head_convs keeps its _
        m = mods.get(path)
        if m is None:
            raise KeyError(f"Keras layer {layer.name} has no torch module {path}")
        t = lambda p: p.detach().cpu().numpy()  # noqa: E731
        if isinstance(m, torch.nn.Conv2d):
            w = t(m.weight)
            w = w.transpose(2, 3, 0, 1) if m.groups > 1 else w.transpose(2, 3, 1, 0)
            layer.set_weights([w] + ([t(m.bias)] if m.bias is not None else []))
        elif isinstance(m, torch.nn.BatchNorm2d):
            layer.set_weights([t(m.weight), t(m.bias), t(m.running_mean), t(m.running_var)])
        elif isinstance(m, torch.nn.Linear):
            layer.set_weights([t(m.weight).T, t(m.bias)])
        else:
            raise TypeError(f"no weight copy for {type(m).__name__} ({path})")
        filled.add(path)
    expected = {n for n, m in mods.items() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear))}
    if expected - filled:
        raise KeyError(f"torch modules without a Keras layer: {sorted(expected - filled)[:5]}")


def keras_from_torch(torch_model, batch_size: int | None = 1):
    km = build_keras(torch_model.spec, torch_model.input_size, batch_size)
    copy_torch_weights(km, torch_model)
    return km


def keras_logits(km, x_nchw: np.ndarray) -> np.ndarray:
    return np.concatenate([km(b.transpose(0, 2, 3, 1), training=False).numpy()
                           for b in np.array_split(x_nchw, len(x_nchw))])
