"""What int8 costs the MoGA networks trained here: TFLite int8 vs fp32 (and torch) accuracy on the
10,000 CIFAR-10 test images, for every CIFAR-10 entry of weights/manifest.json.

    python benchmarks/bench_int8.py --cifar10 ../shared/data/cifar10-jpeg.zip \\
        [--calib-images 400] [--models moga_c ...] [--layer-stats] [--report benchmarks/results/int8_cifar10.json]

int8 is calibrated on ``--calib-images`` training images (class-balanced, seeded; every 4th held out
to verify the file, as ``moga-export`` does) written losslessly to a temporary folder; the three
runs are scored by ``moga-eval``'s code path, and top-1 agreement is counted image by image.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moga_zoo import create_model  # noqa: E402
from moga_zoo.data import datasets  # noqa: E402
from moga_zoo.data.loader import balanced_holdout, decode_sample  # noqa: E402
from moga_zoo.evaluate import evaluate_source  # noqa: E402
from moga_zoo.export import export  # noqa: E402
from moga_zoo.export.common import load_images  # noqa: E402
from moga_zoo.export.keras import keras_from_torch  # noqa: E402
from moga_zoo.export.tflite import converter  # noqa: E402
from moga_zoo.files import write_text_atomic  # noqa: E402
from moga_zoo.train.manifest import read_manifest  # noqa: E402


def write_calibration(cifar10, n: int, folder: Path) -> Path:
    ds = datasets.cifar10(cifar10, "train")
    labels = np.array([s.label for s in ds.samples])
    take, _ = balanced_holdout(labels, len(ds.classes), n, seed=0)
    for i in take:
        decode_sample(ds.samples[i]).save(folder / f"{i:05d}_{ds.classes[labels[i]]}.png")
    return folder


def layer_error(net, calib: Path) -> dict:
    """Per-tensor int8 error of ``net``'s full-int8 conversion on the calibration images, by
    TensorFlow's QuantizationDebugger: RMSE over the quantization step (scale). Pure rounding
    gives 1/sqrt(12) = 0.29; a tensor far above that is one whose range int8 does not cover."""
    import tensorflow as tf

    images = load_images(calib, net.pretrained_cfg.preprocess).x
    conv = converter(keras_from_torch(net, batch_size=1), "int8", images)  # set up as moga-export's
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # Keras's signature, TF's notices
        warnings.simplefilter("ignore")
        # debugged on the converter's own generator of the calibration images
        debugger = tf.lite.experimental.QuantizationDebugger(converter=conv,
                                                             debug_dataset=conv.representative_dataset)
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    stats = sorted(((float(r["mean_squared_error"]) ** 0.5 / float(r["scale"]), r["op_name"], r["tensor_name"])
                    for r in csv.DictReader(buf) if float(r["scale"]) > 0), reverse=True)
    return {"tensors": len(stats), "median_rmse_over_scale": round(float(np.median([s[0] for s in stats])), 3),
            "worst": [{"rmse_over_scale": round(e, 3), "op": op, "tensor": t.split(";")[0]} for e, op, t in stats[:5]]}


def top1_column(path: Path) -> dict[str, str]:
    """image -> predicted class index, from moga-eval's predictions CSV."""
    with open(path, newline="") as f:
        return {r["image"]: r["top1"] for r in csv.DictReader(f)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cifar10", required=True)
    ap.add_argument("--calib-images", type=int, default=400)
    ap.add_argument("--models", nargs="*", help="default: every CIFAR-10 entry of the manifest")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", default="benchmarks/results/int8_cifar10.json")
    ap.add_argument("--layer-stats", action="store_true",
                    help="also measure every tensor's int8 error (TensorFlow's QuantizationDebugger)")
    args = ap.parse_args(argv)
    entries = [e for e in read_manifest() if e["form"] == "cifar10" and (not args.models or e["model"] in args.models)]
    if not entries:
        ap.error("no CIFAR-10 weights in weights/manifest.json (ship a run with 'moga-zoo ship' first)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "calib").mkdir()
        calib = write_calibration(args.cifar10, args.calib_images, tmp / "calib")
        for e in entries:
            net = create_model(e["model"], weights=e["tag"])
            row = {"model": e["model"], "tag": e["tag"], "weights_sha256": e["sha256"]}
            preds = {}
            for label, kw in (("torch", None), ("tflite_fp32", {}), ("tflite_int8", {"quantize": "int8"})):
                pred = tmp / f"{e['model']}_{label}.csv"
                if kw is None:
                    res = evaluate_source(model=e["model"], weights=e["tag"], cifar10=args.cifar10,
                                          threads=args.threads, predictions=pred, progress=False, batch_size=250)
                else:
                    info = export(net, "tflite", tmp / "out", calib=calib if kw else None,
                                  images=None if kw else calib, threads=args.threads, **kw)
                    row[f"{label}_bytes"] = Path(info["path"]).stat().st_size
                    row[f"{label}_verification"] = info["verification"]
                    res = evaluate_source(backend="tflite", artifact=info["path"], cifar10=args.cifar10,
                                          threads=args.threads, predictions=pred, progress=False)
                row[f"{label}_top1"], row[f"{label}_top5"], row["images"] = round(res.top1, 2), round(res.top5, 2), res.n
                preds[label] = top1_column(pred)
                print(f"{e['model']} {label}: top-1 {res.top1:.2f}% top-5 {res.top5:.2f}%", file=sys.stderr)
            if args.layer_stats:
                row["int8_layer_error"] = layer_error(net, calib)
                worst = row["int8_layer_error"]["worst"][0]
                print(f"{e['model']} int8 RMSE/scale: median {row['int8_layer_error']['median_rmse_over_scale']}, "
                      f"worst {worst['rmse_over_scale']} ({worst['op']} {worst['tensor']})", file=sys.stderr)
            for a, b in (("tflite_int8", "tflite_fp32"), ("tflite_fp32", "torch")):
                same = sum(preds[a][k] == preds[b].get(k) for k in preds[a])
                row[f"agree_{a}_vs_{b}"] = round(100 * same / len(preds[a]), 2)
            rows.append(row)
    report = {"command": " ".join(["python", "benchmarks/bench_int8.py", *(argv or sys.argv[1:])]),
              "calibration": f"{args.calib_images} CIFAR-10 training images, class-balanced (seed 0); every 4th "
                             f"held out to verify the int8 file", "rows": rows}
    write_text_atomic(Path(args.report), json.dumps(report, indent=2))
    print("| model | torch top-1 | TFLite fp32 top-1 | TFLite int8 top-1 | int8 - fp32 | int8/fp32 top-1 agree | "
          "int8 size |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['torch_top1']:.2f}% | {r['tflite_fp32_top1']:.2f}% | {r['tflite_int8_top1']:.2f}% "
              f"| {r['tflite_int8_top1'] - r['tflite_fp32_top1']:+.2f} | {r['agree_tflite_int8_vs_tflite_fp32']:.2f}% "
              f"| {r['tflite_int8_bytes'] / 1e6:.2f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
