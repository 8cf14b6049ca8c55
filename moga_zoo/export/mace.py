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
# Ops MACE's ONNX converter handles (its converter's op table); MoGA needs the first line only.
MACE_OPS = {"Conv", "Relu", "HardSigmoid", "Mul", "Add", "GlobalAveragePool", "Flatten", "Reshape", "Gemm",
            "Clip", "AveragePool", "MaxPool", "MatMul", "Dropout", "Identity", "BatchNormalization", "Pad",
            "Concat", "Softmax", "Sigmoid", "ReduceMean", "Squeeze", "Unsqueeze", "Transpose", "Sub", "Div"}
AXES_AS_ATTRIBUTE = {"ReduceMean", "Squeeze", "Unsqueeze"}
RUNTIMES = ("cpu", "gpu", "cpu+gpu")
DATA_TYPES = ("fp16_fp32", "fp32_fp32")


def check_mace(model) -> list[str]:
    """Every reason MACE's ONNX converter (GPU runtime) would reject or mistranslate the graph.

    ``model``: a path or an onnx ModelProto. An empty list means MACE-ready.
    """
    import onnx
    from onnx import shape_inference

    proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    problems = []
    if proto.ir_version > MAX_IR:
        problems.append(f"IR version {proto.ir_version} > {MAX_IR} (MACE's converter was built on onnx 1.8)")
    for op in proto.opset_import:
        if op.domain not in ("", "ai.onnx"):
            problems.append(f"opset domain {op.domain!r}: only the default domain is understood")
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
    try:
        inferred = shape_inference.infer_shapes(proto)
    except Exception as e:  # noqa: BLE001 - a graph shape inference cannot read is itself a finding
        problems.append(f"shape inference failed: {e}")
        inferred = proto
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in list(inferred.graph.value_info)
             + list(inferred.graph.input) + list(inferred.graph.output)}
    ranks.update({i.name: len(i.dims) for i in g.initializer})
    shapes = {i.name: list(i.dims) for i in g.initializer}
    produced_by_node = {o for n in g.node for o in n.output}
    for n in g.node:
        where = f"node {n.name or '?'} ({n.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "HardSwish":
            problems.append(f"{where}: no HardSwish in MACE; write it as x * HardSigmoid(x) (opset <= 13 export)")
            continue
        if n.op_type not in MACE_OPS:
            problems.append(f"{where}: op not handled by MACE's ONNX converter")
            continue
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain {n.domain!r}")
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1:
            weight = n.input[1]
            if weight not in inits:
                src = "the output of another node" if weight in produced_by_node else "not an initializer"
                problems.append(f"{where}: weight {weight} is {src}; MACE needs weights as initializers")
            if n.op_type == "Conv":
                group = attrs.get("group", 1)
                if group > 1 and weight in shapes and shapes[weight][1] != 1:
                    problems.append(f"{where}: grouped convolution (group={group}) that is not depthwise")
        if n.op_type in AXES_AS_ATTRIBUTE and len(n.input) > 1:
            problems.append(f"{where}: axes given as an input; MACE reads axes only as an attribute")
        if n.op_type in ("Reshape", "Pad") and len(n.input) > 1 and n.input[1] not in inits:
            problems.append(f"{where}: {n.input[1]} must be a constant initializer")
        if n.op_type in ("Mul", "Add", "Sub", "Div") and len(n.input) == 2:
            r = [ranks.get(x) for x in n.input]
            if None not in r and r[0] != r[1] and max(r) == 4:
                problems.append(f"{where}: broadcast between ranks {r}; MACE's GPU needs both inputs 4-D "
                                f"(keep the SE gate [N,C,1,1])")
    return problems


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
    return f"""# MACE deployment file for {name}, written by moga-export.
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


def mace_graph(model):
    proto = graph(model, MACE_OPSET, dynamic_batch=False, size=model.input_size)
    proto.ir_version = min(proto.ir_version, MAX_IR)
    problems = check_mace(proto)
    if problems:
        raise ExportError(f"{model.spec.name} is not MACE-ready:\n  " + "\n  ".join(problems))
    return proto


def export_mace(model, path: str | Path, *, deploy: Deployment = Deployment(), images=None,
                threads: int | None = None) -> dict:
    """``<name>.mace.onnx`` (verified) and its deployment YAML ``<name>.yml`` beside it."""
    path = Path(path)
    yml = path.parent / f"{model.spec.name}.yml"
    info = save_verified(mace_graph(model), path, model, images, "mace",
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
