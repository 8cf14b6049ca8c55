import json
import os

import numpy as np
import pytest

import moga_zoo
from conftest import ROOT
from moga_zoo.cli.export import main as export_main
from moga_zoo.evaluate import evaluate_source
from moga_zoo.export import ExportError, export
from moga_zoo.export import common as C

onnx = pytest.importorskip("onnx", reason="exports need pip install 'moga-zoo[onnx]'")


def sample_files(imagenet_sample):
    return sorted(imagenet_sample.glob("*.JPEG"))


def test_onnx_moga_a_is_slim_checked_and_carries_metadata(tmp_path):
    info = export("moga_a", "onnx", tmp_path, dynamic_batch=True)
    path = tmp_path / "moga_a.onnx"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary's 0600
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert ops <= {"Conv", "Relu", "HardSwish", "HardSigmoid", "Mul", "Add", "GlobalAveragePool", "Flatten", "Gemm"}
    assert "HardSwish" in ops and m.opset_import[0].version == 17
    meta = json.loads({p.key: p.value for p in m.metadata_props}["moga_zoo"])
    assert meta["preprocess"]["resize"] == 256 and meta["labels"] == "imagenet"
    side = json.loads((tmp_path / "moga_a.onnx.json").read_text())
    for key in ("model", "spec", "weights_sha256", "preprocess", "labels", "input", "opset", "verification", "sha256"):
        assert key in side
    assert side["input"] == {"name": "input", "shape": ["batch", 3, 224, 224], "layout": "NCHW",
                             "dtype": "float32", "output": "logits"}
    assert side["verification"]["images"].startswith("built-in") and side["verification"]["max_rel_err"] < 1e-4
    from moga_zoo.runners import OnnxRunner
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    ref = C.torch_logits(moga_zoo.create_model("moga_a"), x[:1])  # other random weights: shape only
    assert OnnxRunner(path)(x).shape == (3, 1000) and ref.shape == (1, 1000)
    assert info["path"] == str(path)


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    from moga_zoo.export import onnx as E
    monkeypatch.setattr(E, "ONNX_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="no file written"):
        export("moga_c", "onnx", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_option_errors():
    with pytest.raises(ExportError, match="--quantize applies to tflite"):
        export("moga_a", "onnx", quantize="int8")
    with pytest.raises(ExportError, match="unknown format"):
        export("moga_a", "coreml")
    with pytest.raises(ExportError, match="int8 needs calibration images"):
        export("moga_a", "tflite", quantize="int8")
    assert export_main(["--model", "moga_a", "--format", "mace", "--opset", "17"]) == 2


@pytest.fixture(scope="module")
def lite0_onnx(tmp_path_factory, lite0, imagenet_sample):
    out = tmp_path_factory.mktemp("onnx")
    info = export(lite0, "onnx", out, images=imagenet_sample)
    return out / "efficientnet_lite0.onnx", info


def test_lite0_onnx_matches_torch_on_real_images(lite0_onnx):
    _, info = lite0_onnx
    v = info["verification"]
    assert v["n_images"] == 200 and v["max_abs_err"] <= 1e-4 and v["top1_agreement"] == 1.0
    assert v["top1"] == pytest.approx(89.0)
    assert info["weights_sha256"].startswith("579344248a93")


def test_onnxruntime_backend_reproduces_reference_figures(lite0_onnx, imagenet_sample):
    """MOGA_FACTS.md section 7 through the exported file, preprocessing read from its sidecar."""
    res = evaluate_source(backend="onnxruntime", artifact=lite0_onnx[0], imagenet=imagenet_sample)
    assert res.n == 200 and abs(res.top1 - 89.0) <= 0.5 and abs(res.top5 - 98.5) <= 0.5
    side = lite0_onnx[0].parent / "efficientnet_lite0.onnx.json"
    side.rename(side.with_suffix(".bak"))  # metadata_props alone must be enough
    try:
        res2 = evaluate_source(backend="onnxruntime", artifact=lite0_onnx[0], imagenet=imagenet_sample, limit=40)
        assert res2.n == 40
    finally:
        side.with_suffix(".bak").rename(side)


@pytest.fixture(scope="module")
def lite0_tflite(tmp_path_factory, lite0, imagenet_sample):
    pytest.importorskip("tensorflow", reason="TFLite needs pip install 'moga-zoo[tflite]'")
    files = sample_files(imagenet_sample)
    calib, held_out = files[0::2], files[1::2]  # disjoint halves
    out = tmp_path_factory.mktemp("tflite")
    infos = {q: export(lite0, "tflite", out, quantize=q, calib=calib if q == "int8" else None, images=held_out)
             for q in (None, "fp16", "int8")}
    return out, infos


def test_tflite_fp32_fp16_int8(lite0_tflite, imagenet_sample):
    out, infos = lite0_tflite
    fp32, fp16, int8 = infos[None]["verification"], infos["fp16"]["verification"], infos["int8"]["verification"]
    assert fp32["max_abs_err"] <= 1e-4 and fp32["top1_agreement"] == 1.0
    assert fp16["top1_agreement"] >= 0.97
    assert int8["top1"] >= fp32["top1"] - 2.0, (int8, fp32)  # the target, on held-out images
    assert infos["int8"]["input"]["dtype"] == "int8" and infos["int8"]["calibration"].endswith("(100 images)")
    assert set(infos[None]["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "HARD_SWISH", "MEAN", "PAD",
                                       "FULLY_CONNECTED"}
    res = evaluate_source(backend="tflite", artifact=out / "efficientnet_lite0.int8.tflite",
                          imagenet=imagenet_sample, limit=50)
    assert res.n == 50 and res.top1 >= 80


def test_keras_builder_hard_swish_and_se_match_torch():
    pytest.importorskip("tensorflow")
    from moga_zoo.export.keras import keras_from_torch, keras_logits
    m = moga_zoo.create_model("moga_b").eval()
    imgs = C.load_images(None, m.pretrained_cfg.preprocess)
    ref, got = C.torch_logits(m, imgs.x), keras_logits(keras_from_torch(m), imgs.x)
    assert np.abs(ref - got).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_tf2onnx_path_agrees_with_torch_onnx(tmp_path):
    """Two independent routes to ONNX (torch exporter; Keras builder + tf2onnx) must agree."""
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    from moga_zoo.export.keras import keras_from_torch
    from moga_zoo.runners import OnnxRunner
    m = moga_zoo.create_model("moga_c").eval()
    export(m, "onnx", tmp_path)
    sig = [tf.TensorSpec((1, 224, 224, 3), tf.float32, name="input")]
    proto, _ = tf2onnx.convert.from_keras(keras_from_torch(m), input_signature=sig, opset=17)
    import onnxruntime as ort
    sess = ort.InferenceSession(proto.SerializeToString())
    x = C.load_images(None, m.pretrained_cfg.preprocess).x
    a = OnnxRunner(tmp_path / "moga_c.onnx")(x)
    b = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: xi[None].transpose(0, 2, 3, 1)})[0] for xi in x])
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(a).max())


@pytest.mark.parametrize("name", ["moga_a", "moga_b", "moga_c"])
def test_mace_export_is_clean(name, tmp_path):
    from moga_zoo.export.mace import check_mace, reference_descriptors
    info = export(name, "mace", tmp_path)
    path = tmp_path / f"{name}.mace.onnx"
    m = onnx.load(str(path))
    assert check_mace(path, "gpu") == [] and m.ir_version <= 7 and m.opset_import[0].version == 13
    assert {n.op_type for n in m.graph.node} == {"Conv", "Relu", "Clip", "Mul", "Add", "GlobalAveragePool",
                                                 "Flatten", "Gemm"}
    scalars = {i.name: float(onnx.numpy_helper.to_array(i)) for i in m.graph.initializer if not i.dims}
    for n in m.graph.node:
        if n.op_type == "Clip":  # MACE turns Clip(min 0) into RELUX, fused or standalone, on every runtime
            assert [scalars[x] for x in n.input[1:]] == [0.0, 6.0]
        if n.op_type in ("Add", "Mul") and any(x in scalars for x in n.input):
            assert [scalars[x] for x in n.input if x in scalars][0] == pytest.approx(3.0 if n.op_type == "Add" else 1 / 6)
    assert info["verification"]["max_abs_err"] <= 1e-4 * max(1.0, info["verification"]["ref_max_abs"])
    yml = (tmp_path / f"{name}.yml").read_text()
    assert f'model_sha256_checksum: "{info["sha256"]}"' in yml
    committed = reference_descriptors()[f"{name}.yml"]
    strip = lambda t: [l for l in t.splitlines() if "model_sha256_checksum" not in l]  # noqa: E731
    assert strip(yml) == strip(committed)


def test_committed_descriptors_have_not_drifted():
    from moga_zoo.export.mace import reference_descriptors
    for name, text in reference_descriptors().items():
        assert (ROOT / "export" / name).read_text() == text, f"export/{name} drifted: run moga-export --mace-descriptors export"


def test_mace_checker_lists_every_violation(tmp_path, capsys):
    from moga_zoo.export.mace import check_mace
    m = moga_zoo.create_model("moga_a").eval()
    from moga_zoo.export.onnx import graph
    onnx.save(graph(m, 17, True, 224), tmp_path / "general.onnx")  # the general export is not MACE-ready
    text = "\n".join(check_mace(tmp_path / "general.onnx"))
    assert "IR version 8 > 7" in text
    assert "opset 17: MACE handles 11..13" in text
    assert "no HardSwish in MACE" in text
    assert "input input has shape ['batch', 3, 224, 224]" in text
    bad = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["w0"], ["w"], name="id"),
         onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="grouped", group=2),
         onnx.helper.make_node("Conv", ["y", "w0"], ["y2"], name="grouped2", group=2),
         onnx.helper.make_node("ReduceMean", ["y2", "axes"], ["z"], name="rm")],
        "bad", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 8, 8])],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.zeros((4, 2, 1, 1), np.float32), "w0"),
         onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]),
        opset_imports=[onnx.helper.make_opsetid("", 18)])
    onnx.save(bad, tmp_path / "bad.onnx")
    text = "\n".join(check_mace(tmp_path / "bad.onnx"))
    assert "input x has shape ['N', 4, 8, 8]" in text
    assert "node grouped2 (Conv): grouped convolution (group=2) that is not depthwise" in text
    assert "weight w is the output of another node" in text
    assert "axes given as an input" in text
    assert export_main(["--check-mace", str(tmp_path / "bad.onnx")]) == 1
    assert "problem(s)" in capsys.readouterr().out


def test_hardsigmoid_graph_fails_the_gpu_check_and_the_new_graph_passes(tmp_path):
    """The finding of issue 12: MACE's OpenCL runtime has no HardSigmoid activation."""
    from moga_zoo.export.mace import check_mace, mace_graph
    from moga_zoo.export.onnx import graph
    m = moga_zoo.create_model("moga_c").eval()
    old = graph(m, 13, False, 224)
    old.ir_version = 7
    onnx.save(old, tmp_path / "old.mace.onnx")
    gpu = check_mace(tmp_path / "old.mace.onnx", "gpu")
    assert gpu and all("HARDSIGMOID" in p and "mace/ops/common/utils.cc" in p for p in gpu)
    assert check_mace(tmp_path / "old.mace.onnx", "cpu+gpu") == gpu
    assert check_mace(tmp_path / "old.mace.onnx", "cpu") == []
    assert export_main(["--check-mace", str(tmp_path / "old.mace.onnx"), "--runtime", "gpu"]) == 1
    assert export_main(["--check-mace", str(tmp_path / "old.mace.onnx"), "--runtime", "cpu"]) == 0
    new = mace_graph(m, "gpu")
    assert check_mace(new, "gpu") == [] and "HardSigmoid" not in {n.op_type for n in new.graph.node}
    assert "HardSigmoid" in {n.op_type for n in mace_graph(m, "cpu").graph.node}  # the CPU keeps the fused op


def test_mace_cpu_runtime_export_keeps_hardsigmoid(tmp_path):
    from moga_zoo.export.mace import Deployment
    info = export("moga_c", "mace", tmp_path, deploy=Deployment(runtime="cpu"))
    assert "HardSigmoid" in info["ops"] and "Clip" not in info["ops"]
    assert "runtime: cpu\n" in (tmp_path / "moga_c.yml").read_text()


def test_gpu_rules_name_their_mace_source():
    from moga_zoo.export.mace import check_mace
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8, 8])
    y = h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)
    g = h.make_graph(
        [h.make_node("Conv", ["x", "w"], ["y"], name="dw_x2", group=4),  # depthwise, multiplier 2
         h.make_node("Mul", ["y", "row"], ["z"], name="mul_row")],       # broadcast along width
        "g", [x], [y],
        [onnx.numpy_helper.from_array(np.zeros((8, 1, 3, 3), np.float32), "w"),
         onnx.numpy_helper.from_array(np.zeros((1, 8, 8, 1), np.float32), "row")])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 7
    text = "\n".join(check_mace(model, "gpu"))
    assert "multiplier 2" in text and "mace/ops/opencl/image/depthwise_conv2d.cc" in text
    assert "broadcasts only a [N,C,1,1] operand" in text and "mace/ops/opencl/image/eltwise.cc" in text
    assert check_mace(model, "cpu") == []


def test_mace_gpu_log_maps_onto_the_rows_of_the_exported_graph(tmp_path):
    """A MACE --benchmark per-op table of the graph we now write (Add/Clip/Mul instead of
    HardSigmoid) imports into exactly the spec's table rows."""
    from moga_zoo.export.mace import mace_graph
    from moga_zoo.latency.parsers import parse_mace_log
    from moga_zoo.latency.table import row_keys
    m = moga_zoo.create_model("moga_b").eval()
    proto = mace_graph(m, "gpu")
    lines = ["I benchmark.cc:100] Sort by Run Order", "| name | type | Avg(ms) |", "|---|---|---|"]
    lines += [f"| {n.name} | {n.op_type} | 0.010 |" for n in proto.graph.node]
    table = parse_mace_log("\n".join(lines), m.spec)
    keys = [k for _, k in row_keys(m.spec, 224)]
    assert set(table.entries) == set(keys)
    assert sum(e["mean"] for e in table.entries.values()) == pytest.approx(0.010 * len(proto.graph.node))
