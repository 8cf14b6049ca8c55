"""MACE-ready ONNX graphs, MACE deployment YAML, and a static checker for MACE's ONNX converter.

MACE's converter cannot run beside current onnx (it imports the removed ``onnx.mapping``), so what
it accepts is encoded here as rules (see ``check_mace``) and every file we write must pass them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import write_text_atomic
from .common import ExportError
from .onnx import INPUT, OUTPUT, graph, save_verified

MACE_OPSET = 13
MAX_IR = 7
CONVERTER = "tools/python/transform/onnx_converter.py"
# Ops MACE's ONNX converter handles (its OnnxOpType table); MoGA needs the first line only.
MACE_OPS = {"Conv", "Relu", "HardSigmoid", "Mul", "Add", "GlobalAveragePool", "Flatten", "Reshape", "Gemm",
            "Clip", "AveragePool", "MaxPool", "MatMul", "Dropout", "Identity", "BatchNormalization", "Pad",
            "Concat", "Softmax", "Sigmoid", "ReduceMean", "Squeeze", "Unsqueeze", "Transpose", "Sub", "Div"}
AXES_AS_ATTRIBUTE = {"ReduceMean", "Squeeze", "Unsqueeze"}
# ONNX activations and the MACE ActivationType the converter maps them to (onnx_converter.py
# activation_type). MACE's OpenCL kernels build an activation only from FillBuiltOptions
# (mace/ops/common/utils.cc): NOOP, PRELU, RELU, RELUX, TANH, SIGMOID, LEAKYRELU, ELU; anything
# else is LOG(FATAL) "Unknown activation type".
GPU_ACTIVATIONS = {"NOOP", "PRELU", "RELU", "RELUX", "TANH", "SIGMOID", "LEAKYRELU", "ELU"}
ONNX_ACTIVATIONS = {"Relu": "RELU", "PRelu": "PRELU", "Tanh": "TANH", "Sigmoid": "SIGMOID",
                    "LeakyRelu": "LEAKYRELU", "Elu": "ELU", "HardSigmoid": "HARDSIGMOID"}
RUNTIMES = ("cpu", "gpu", "cpu+gpu")
DATA_TYPES = ("fp16_fp32", "fp32_fp32")


def _shape_info(proto):
    from onnx import shape_inference
    try:
        inferred = shape_inference.infer_shapes(proto)
        error = None
    except Exception as e:  # noqa: BLE001 - a graph shape inference cannot read is itself a finding
        inferred, error = proto, f"shape inference failed: {e}"
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    shapes.update({i.name: list(i.dims) for i in proto.graph.initializer})
    return shapes, error


def check_mace(model, runtime: str = "cpu+gpu") -> list[str]:
    """Every reason MACE would reject, mistranslate or fail to run the graph on ``runtime``.

    Two layers of rules, each naming the MACE source it comes from: what the ONNX converter
    accepts (any runtime), and what the chosen runtime executes (for ``gpu`` and ``cpu+gpu``,
    MACE's OpenCL kernels: activation set, depthwise multiplier, element-wise broadcasting).

    ``model``: a path or an onnx ModelProto. An empty list means MACE-ready for ``runtime``.
    """
    import onnx

    if runtime not in RUNTIMES:
        raise ExportError(f"MACE runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if isinstance(model, (str, Path)):
        try:
            proto = onnx.load(str(model))
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear answer
            raise ExportError(f"{model} is not an ONNX model ({type(e).__name__}); --check-mace reads "
                              f".onnx files such as moga-export --format mace writes") from None
    else:
        proto = model
    if not proto.graph.node:
        raise ExportError(f"{model if isinstance(model, (str, Path)) else 'the model'} is not an ONNX model "
                          f"(it has no graph); --check-mace reads .onnx files such as moga-export writes")
    gpu = runtime != "cpu"
    problems = []
    if proto.ir_version > MAX_IR:
        problems.append(f"IR version {proto.ir_version} > {MAX_IR} (MACE's converter was built on onnx 1.8)")
    for op in proto.opset_import:
        if op.domain not in ("", "ai.onnx"):
            problems.append(f"opset domain {op.domain!r}: only the default domain is understood [{CONVERTER}]")
        elif not 11 <= op.version <= MACE_OPSET:
            problems.append(f"opset {op.version}: MACE handles 11..{MACE_OPSET}")
    g = proto.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        problems.append(f"{len(real_inputs)} graph inputs; a deployment subgraph here has exactly one")
    for i in real_inputs:
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in i.type.tensor_type.shape.dim]
        if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims):
            problems.append(f"input {i.name} has shape {dims}: MACE needs a static 4-D NCHW shape")
        elif dims[1] not in (1, 3, 4):
            problems.append(f"input {i.name} shape {dims} does not look NCHW (channels second)")
    shapes, error = _shape_info(proto)
    if error:
        problems.append(error)
    produced_by_node = {o for n in g.node for o in n.output}
    for n in g.node:
        where = f"node {n.name or '?'} ({n.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "HardSwish":
            problems.append(f"{where}: no HardSwish in MACE's converter; write it as x * Clip(x + 3, 0, 6) * (1/6) "
                            f"[{CONVERTER}]")
            continue
        if n.op_type not in MACE_OPS:
            problems.append(f"{where}: op not handled by MACE's ONNX converter [{CONVERTER}]")
            continue
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain {n.domain!r} [{CONVERTER}]")
        if gpu and ONNX_ACTIVATIONS.get(n.op_type, "NOOP") not in GPU_ACTIVATIONS:
            problems.append(
                f"{where}: MACE's OpenCL runtime has no {ONNX_ACTIVATIONS[n.op_type]} activation (LOG(FATAL) "
                f"'Unknown activation type' in FillBuiltOptions, mace/ops/common/utils.cc, and "
                f"mace/ops/opencl/image/activation.cc; mace/ops/activation.cc places every 4-D activation on "
                f"the GPU): write hard-sigmoid as Clip(x + 3, 0, 6) * (1/6), or deploy with --runtime cpu")
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1:
            weight = n.input[1]
            if weight not in inits:
                src = "the output of another node" if weight in produced_by_node else "not an initializer"
                problems.append(f"{where}: weight {weight} is {src}; MACE needs weights as initializers [{CONVERTER}]")
            if n.op_type == "Conv":
                group = attrs.get("group", 1)
                w = shapes.get(weight)
                if group > 1 and w is not None and w[1] != 1:
                    problems.append(f"{where}: grouped convolution (group={group}) that is not depthwise "
                                    f"[{CONVERTER} convert_conv2d]")
                elif gpu and group > 1 and w is not None and w[0] != group:
                    problems.append(f"{where}: depthwise multiplier {w[0] // group} (out {w[0]}, group {group}); "
                                    f"MACE's OpenCL depthwise kernel needs multiplier 1 "
                                    f"[mace/ops/opencl/image/depthwise_conv2d.cc]")
        if n.op_type in AXES_AS_ATTRIBUTE and len(n.input) > 1:
            problems.append(f"{where}: axes given as an input; MACE reads axes only as an attribute [{CONVERTER}]")
        if n.op_type in ("Reshape", "Pad") and len(n.input) > 1 and n.input[1] not in inits:
            problems.append(f"{where}: {n.input[1]} must be a constant initializer [{CONVERTER}]")
        if n.op_type == "Clip" and any(x and x not in inits for x in n.input[1:]):
            problems.append(f"{where}: Clip bounds must be constant initializers [{CONVERTER} convert_clip]")
        if n.op_type in ("Mul", "Add", "Sub", "Div") and len(n.input) == 2:
            problems += _eltwise_rules(where, n, shapes, inits, gpu)
    return problems


def _eltwise_rules(where: str, n, shapes: dict, inits: set, gpu: bool) -> list[str]:
    """Element-wise ops: a rank-0 or [1] constant becomes ``scalar_input`` (onnx_converter.py
    convert_eltwise); otherwise the OpenCL kernel needs both inputs 4-D, equal or broadcast on the
    channel only (mace/ops/opencl/image/eltwise.cc), and constant operands 1-D or 4-D to stay on
    the GPU (the placer in mace/ops/eltwise.cc)."""
    a, b = (shapes.get(x) for x in n.input)
    scalar = [x in inits and (shapes.get(x) in ([], [1])) for x in n.input]
    if any(scalar) or a is None or b is None:
        return []
    out = []
    if len(a) != len(b) and max(len(a), len(b)) == 4:
        out.append(f"{where}: broadcast between ranks {[len(a), len(b)]}; MACE's GPU needs both inputs 4-D "
                   f"(keep the SE gate [N,C,1,1]) [mace/ops/opencl/image/eltwise.cc]")
    elif gpu and len(a) == len(b) == 4 and a != b:
        small, big = (a, b) if (a[2:] == [1, 1]) else (b, a)
        if not (small[:2] == big[:2] and small[2:] == [1, 1]):
            out.append(f"{where}: broadcast {a} with {b}; MACE's OpenCL element-wise kernel broadcasts only "
                       f"a [N,C,1,1] operand [mace/ops/opencl/image/eltwise.cc]")
    if gpu:
        for x, s in zip(n.input, (a, b)):
            if x in inits and len(s) not in (1, 4):
                out.append(f"{where}: constant {x} has rank {len(s)}; MACE places such element-wise ops on "
                           f"the CPU [mace/ops/eltwise.cc]")
    return out


def gpu_activations(proto):
    """Rewrite every HardSigmoid(alpha, beta) as ``Clip(x + beta/alpha, 0, 1/alpha) * alpha``
    (for MoGA: Clip(x + 3, 0, 6) * (1/6)), ops MACE's OpenCL runtime runs: the converter turns a
    Clip with min 0 into RELUX and scalar constants into ``scalar_input``. New nodes keep the
    original node's name as prefix, so MACE's per-op benchmark still maps them to spec rows."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g = proto.graph
    consts: dict[float, str] = {}

    def scalar(v: float) -> str:
        v = float(np.float32(v))
        if v not in consts:
            consts[v] = f"mace_scalar_{len(consts)}"
            g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), consts[v]))
        return consts[v]

    nodes = []
    for n in g.node:
        if n.op_type != "HardSigmoid":
            nodes.append(n)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        base = n.name or n.output[0]
        shifted, clipped = f"{base}_shifted", f"{base}_clipped"
        nodes += [onnx.helper.make_node("Add", [n.input[0], scalar(beta / alpha)], [shifted], name=f"{base}_add"),
                  onnx.helper.make_node("Clip", [shifted, scalar(0.0), scalar(1.0 / alpha)], [clipped],
                                        name=f"{base}_clip"),
                  onnx.helper.make_node("Mul", [clipped, scalar(alpha)], list(n.output), name=f"{base}_scale")]
    del g.node[:]
    g.node.extend(nodes)
    return proto


@dataclass(frozen=True)
class Deployment:
    """MACE deployment settings (the YAML's fields a user chooses)."""

    runtime: str = "cpu+gpu"
    data_type: str = "fp16_fp32"
    target_abis: tuple[str, ...] = ("arm64-v8a",)
    winograd: int = 0

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ExportError(f"MACE runtime {self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if self.data_type not in DATA_TYPES:
            raise ExportError(f"MACE data_type {self.data_type!r}: use one of {', '.join(DATA_TYPES)}")
        if self.winograd not in (0, 2, 4):
            raise ExportError(f"MACE winograd must be 0, 2 or 4, got {self.winograd}")


CHECKSUM_PLACEHOLDER = "<sha256 of {file}: moga-export writes it when it writes the file>"


def descriptor(name: str, onnx_file: str, input_size: int, num_classes: int, deploy: Deployment,
               sha256: str | None = None) -> str:
    """The MACE deployment YAML (written by hand: stable text, no YAML dependency)."""
    abis = ", ".join(deploy.target_abis)
    checksum = sha256 or CHECKSUM_PLACEHOLDER.format(file=onnx_file)
    graph_note = ("hard-swish as x * HardSigmoid(x) (MACE's CPU runtime)" if deploy.runtime == "cpu" else
                  "hard-swish as x * Clip(x + 3, 0, 6) * (1/6): MACE's OpenCL runtime has no HardSigmoid")
    return f"""# MACE deployment file for {name}, written by moga-export.
# Graph: {graph_note}.
# Convert with MACE: python tools/converter.py convert --config={name}.yml
library_name: {name}
target_abis: [{abis}]
model_graph_format: file
model_data_format: file
models:
  {name}:
    platform: onnx
    model_file_path: {onnx_file}
    model_sha256_checksum: "{checksum}"
    subgraphs:
      - input_tensors:
          - {INPUT}
        input_shapes:
          - 1,3,{input_size},{input_size}
        input_data_formats:
          - NCHW
        output_tensors:
          - {OUTPUT}
        output_shapes:
          - 1,{num_classes}
    runtime: {deploy.runtime}
    data_type: {deploy.data_type}
    winograd: {deploy.winograd}
    obfuscate: 0
    limit_opencl_kernel_time: 0
"""


def mace_graph(model, runtime: str = "cpu+gpu"):
    """Opset 13 / IR 7 graph; for a GPU runtime hard-sigmoids are rewritten into Add/Clip/Mul."""
    proto = graph(model, MACE_OPSET, dynamic_batch=False, size=model.input_size)
    proto.ir_version = min(proto.ir_version, MAX_IR)
    if runtime != "cpu":
        proto = gpu_activations(proto)
    problems = check_mace(proto, runtime)
    if problems:
        raise ExportError(f"{model.spec.name} is not MACE-ready for runtime {runtime}:\n  " + "\n  ".join(problems))
    return proto


def export_mace(model, path: str | Path, *, deploy: Deployment = Deployment(), images=None,
                threads: int | None = None) -> dict:
    """``<name>.mace.onnx`` (verified) and its deployment YAML ``<name>.yml`` beside it."""
    path = Path(path)
    yml = path.parent / f"{model.spec.name}.yml"
    info = save_verified(mace_graph(model, deploy.runtime), path, model, images, "mace",
                         {"opset": MACE_OPSET, "descriptor": yml.name,
                          "mace": {"runtime": deploy.runtime, "data_type": deploy.data_type,
                                   "target_abis": list(deploy.target_abis)}}, threads)
    write_text_atomic(yml, descriptor(model.spec.name, path.name, model.input_size, model.num_classes,
                                      deploy, info["sha256"]))
    return info


MOGA_MODELS = ("moga_a", "moga_b", "moga_c")


def reference_descriptors(deploy: Deployment = Deployment()) -> dict[str, str]:
    """The descriptors kept in the repository's export/ folder: default deployment, checksum
    left for moga-export to fill in once the user exports with their weights."""
    return {f"{n}.yml": descriptor(n, f"{n}.mace.onnx", 224, 1000, deploy) for n in MOGA_MODELS}


def write_descriptors(out_dir: str | Path) -> list[Path]:
    out = []
    for name, text in reference_descriptors().items():
        path = Path(out_dir) / name
        write_text_atomic(path, text)
        out.append(path)
    return out
