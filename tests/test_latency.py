import json

import pytest

from moga_zoo import specs
from moga_zoo.cli.main import main
from moga_zoo.latency import parsers
from moga_zoo.latency.table import LatencyTable, TableError, row_keys
from moga_zoo.latency.validate import kendall_tau

pytest.importorskip("onnxruntime", reason="latency tables are measured with onnxruntime here")


def test_row_keys_follow_once_for_all():
    keys = [k for _, k in row_keys(specs.MOGA_A)]
    assert len(keys) == len(specs.MOGA_A.rows) == 20
    assert keys[0] == "Conv-input:224x224x3-output:112x112x16"
    assert keys[2] == "expanded_conv-input:112x112x16-output:56x56x24-expand:96-kernel:5-stride:2-idskip:0-se:0-hs:0"
    assert keys[3].endswith("-expand:144-kernel:7-stride:1-idskip:1-se:0-hs:0")
    assert keys[-4:] == ["Conv_1-input:7x7x160-output:7x7x960", "AvgPool2D-input:7x7x960-output:1x1x960",
                         "Conv_2-input:1x1x960-output:1x1x1280", "Logits-input:1x1x1280-output:1000"]
    mnv3 = [k for _, k in row_keys(specs.MOBILENETV3_LARGE)]
    assert mnv3[1] == "expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"


def test_kendall_tau_ranks():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    from moga_zoo.latency.build import build_table
    # force: the suite may share the machine; refusal itself is tested below with a simulated load
    table = build_table("onnxruntime", threads=1, choices=[0, 11], calibrate=4, rounds=4, reps=1, progress=False,
                        force=True)
    path = table.save(tmp_path_factory.mktemp("lut") / "t.json")
    return table, path


def test_build_covers_the_space_and_round_trips(small_table):
    table, path = small_table
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.calibration == table.calibration
    meta = loaded.meta
    assert (meta["backend"], meta["threads"], meta["choices"]) == ("onnxruntime", 1, [0, 11])
    assert {"cpu", "date", "versions", "spinning", "options"} <= set(meta)
    assert all(v["count"] == 4 and v["mean"] > 0 for v in loaded.entries.values())
    for vec in ([0] * 14, [11] * 14, [0, 11] * 7):
        spec = specs.from_choices(vec)
        assert not loaded.missing(spec)
        raw = loaded.raw(spec)
        c = loaded.calibration
        assert loaded.predict(spec) == pytest.approx(c["scale"] * raw + c["offset"])
    assert loaded.raw(specs.from_choices([11] * 14)) > loaded.raw(specs.from_choices([0] * 14))
    with pytest.raises(TableError, match="rows are not in the table"):
        loaded.predict(specs.from_choices([5] * 14))
    with pytest.raises(TableError, match="build a table for this family"):
        loaded.predict(specs.EFFICIENTNET_LITE0)


def test_table_file_errors(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "moga-zoo-lut", "version": 99, "entries": {}}))
    with pytest.raises(TableError, match="format version 99"):
        LatencyTable.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{}")
    with pytest.raises(TableError, match="not a moga-zoo latency table"):
        LatencyTable.load(tmp_path / "y.json")
    with pytest.raises(TableError, match="does not exist"):
        LatencyTable.load(tmp_path / "z.json")


def test_ofa_yaml_round_trip(small_table, tmp_path):
    table, _ = small_table
    back = LatencyTable.from_ofa_yaml(table.to_ofa_yaml())
    spec = specs.from_choices([0, 11] * 7)
    assert back.raw(spec) == pytest.approx(table.raw(spec), rel=1e-6)
    ofa_style = "\n".join([
        "Conv-input:224x224x3-output:112x112x16: {count: 50, mean: 1.5, std: 0.1}",
        "expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0:",
        "  count: 50", "  mean: 0.5", "  std: 0.01"])
    imported = LatencyTable.from_ofa_yaml(ofa_style)
    assert imported.entries["Conv-input:224x224x3-output:112x112x16"]["mean"] == 1.5
    with pytest.raises(TableError, match="has no 'mean'"):
        LatencyTable.from_ofa_yaml("key: {count: 3}")


def test_validate_reports_metrics_and_scatter(small_table, tmp_path):
    from moga_zoo.latency.validate import validate_table
    table, _ = small_table
    png = tmp_path / "scatter.png"
    res = validate_table(table, 6, rounds=3, reps=3, png=png, progress=False)
    assert {"rmse_ms", "mape", "kendall_tau", "n"} <= set(res) and res["n"] == 6
    assert res["raw"]["mape"] >= 0 and -1 <= res["kendall_tau"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(set(m["choices"]) <= {0, 11} for m in res["models"])


def test_tflite_benchmark_log(tmp_path):
    manifest = tmp_path / "manifest.json"
    keys = [k for _, k in row_keys(specs.MOGA_A)]
    manifest.write_text(json.dumps({"format": "moga-zoo-lut-rows", "input_size": 224, "choices": [0],
                                    "options": specs.MOGA_A.to_dict()["options"],
                                    "files": {"row_000.tflite": keys[0], "row_001.tflite": keys[1]}}))
    log = """STARTING!
Graph: [/data/local/tmp/row_000.tflite]
Num threads: [1]
Loaded model /data/local/tmp/row_000.tflite
count=10 first=900 curr=850 min=820 max=900 avg=860.5 std=20
Running benchmark for at least 100 iterations and at least 1 seconds
count=100 first=812 curr=800 min=790 max=830 avg=805.25 std=9
Timings (microseconds): count=100 first=812 curr=800 min=790 max=830 avg=805.25 std=9
STARTING!
Graph: [/data/local/tmp/row_001.tflite]
Timings (microseconds): count=100 first=400 curr=300 min=290 max=420 avg=310 std=12
"""
    t = parsers.parse_tflite_log(log, manifest)
    assert t.entries[keys[0]]["mean"] == pytest.approx(0.80525) and t.entries[keys[0]]["count"] == 100
    assert t.entries[keys[1]]["mean"] == pytest.approx(0.310) and t.meta["missing_rows"] == 0
    with pytest.raises(TableError, match="not in the manifest"):
        parsers.parse_tflite_log("Graph: [x.tflite]\ncount=1 first=1 curr=1 min=1 max=1 avg=1 std=0\n", manifest)
    with pytest.raises(TableError, match="benchmark_model output"):
        parsers.parse_tflite_log("nothing here", manifest)


def test_export_rows_onnx(tmp_path):
    manifest = json.loads(parsers.export_rows(tmp_path, "onnx", choices=[3]).read_text())
    want = {k for _, k in row_keys(specs.from_choices([3] * 14))}
    assert set(manifest["files"].values()) == want
    assert all((tmp_path / f).is_file() for f in manifest["files"])


def test_mace_benchmark_log(tmp_path):
    pytest.importorskip("onnx")
    from moga_zoo.export.mace import mace_graph
    import moga_zoo
    proto = mace_graph(moga_zoo.create_model("moga_b").eval())
    names = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "GlobalAveragePool")]
    rows = "\n".join(f"I mace/utils/statistics.cc:343] | Conv2D | 0.0 | 0.1 | 0.100 | 1 | 1 | 1 | [1,1] | SAME | [1] | [1] | [1] | {n} |"
                     for n in names)
    log = ("I mace/utils/statistics.cc:343] ----------\nI mace/utils/statistics.cc:343]  Sort by Run Order\n"
           "I mace/utils/statistics.cc:343] ----------\n"
           "I mace/utils/statistics.cc:343] | Op Type | Start | First | Avg(ms) | % | cdf% | GMACPS | Stride | Pad | "
           "Filter Shape | Output Shape | Dilation | name |\nI mace/utils/statistics.cc:343] ----------\n" + rows
           + "\nI mace/utils/statistics.cc:343] ----------\nI mace/utils/statistics.cc:343]  Sort by Computation Time\n")
    t = parsers.parse_mace_log(log, specs.MOGA_B)
    keys = dict(row_keys(specs.MOGA_B))
    assert set(t.entries) == set(keys.values())
    assert t.entries[keys[0]]["mean"] == pytest.approx(0.1)  # stem: one conv
    n_convs_row5 = sum("features.5/" in n for n in names)
    assert t.entries[keys[5]]["mean"] == pytest.approx(0.1 * n_convs_row5)
    assert t.raw(specs.MOGA_B) == pytest.approx(0.1 * len(names))


def test_bench_rows(capsys):
    from moga_zoo.latency.bench import bench
    rows = bench(["moga_c"], ["torch", "onnxruntime"], threads=1, rounds=2, reps=2, batch=4, progress=False)
    assert [r["backend"] for r in rows] == ["torch", "onnxruntime"]
    ort = rows[1]
    assert ort["vs_onnxruntime"] == 1.0 and ort["params"] == 5_488_200 and ort["macs"] == 221_089_920
    assert ort["median_ms"] > 0 and ort["p90_ms"] >= ort["spread_ms"][0] * 0.5 and ort["images_per_s_b4"] > 0


def test_cli_lut_predict_export_and_errors(small_table, tmp_path, capsys):
    _, path = small_table
    assert main(["lut", "predict", str(path), "--choices", "0 11 0 11 0 11 0 11 0 11 0 11 0 11", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predicted_ms"] > 0
    assert main(["lut", "export", str(path), "--ofa", str(tmp_path / "t.yaml")]) == 0
    assert main(["lut", "import", "--ofa", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "back.json")]) == 0
    capsys.readouterr()
    assert main(["lut", "predict", str(path), "--model", "moga_a"]) == 2
    assert "not in the table" in capsys.readouterr().err
    assert main(["lut", "validate", str(tmp_path / "missing.json")]) == 2


def test_calibration_fit():
    from moga_zoo.latency.build import fit_calibration
    assert fit_calibration([1.0, 2.0, 3.0], [2.5, 4.5, 6.5]) == pytest.approx((2.0, 0.5))
    assert fit_calibration([2.0, 2.0], [3.0, 3.2]) == pytest.approx((1.0, 1.1))  # one choice: offset only


def test_a_busy_machine_is_refused_or_marked(monkeypatch, small_table):
    from moga_zoo.latency import build
    table, _ = small_table
    noise = table.meta["noise"]
    assert {"other_load_before", "cpus", "round_cv_median", "cv_limit"} <= set(noise)
    monkeypatch.setattr(build.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    with pytest.raises(TableError, match="other processes keep 8.0 of this machine's"):
        build.build_table("onnxruntime", threads=1, choices=[0], calibrate=0, rounds=2, progress=False)
    forced = build.build_table("onnxruntime", threads=1, choices=[0], calibrate=0, rounds=2, progress=False,
                               force=True)
    assert "measured under load" in forced.meta["noise"]["warning"]
    assert build.round_cv({"a": {"round_medians": [1.0, 1.0, 1.0]}}) == 0.0
    assert build.round_cv({"a": {"round_medians": [1.0, 2.0, 1.0, 2.0]}}) == pytest.approx(0.5 / 1.5)
