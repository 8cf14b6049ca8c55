"""``moga-export``: ONNX, TFLite and MACE-ready files, each verified against the torch model."""
from __future__ import annotations

import argparse
import json

from ..export import FORMATS, ExportError, export
from .common import positive_int, run


def _report(info: dict) -> str:
    v = info["verification"]
    lines = [f"wrote {info['path']} ({info['format']}{', ' + info['quantize'] if 'quantize' in info else ''}) "
             f"sha256 {info['sha256'][:16]}...",
             f"  sidecar {info['path']}.json" + (f"; MACE descriptor {info['descriptor']}" if "descriptor" in info else ""),
             f"  input {info['input']['name']} {info['input']['shape']} {info['input']['layout']} {info['input']['dtype']}",
             f"  ops: {', '.join(info['ops'])}",
             f"  verified on {v['images']}: max |logit error| {v['max_abs_err']:.3g}, "
             f"top-1 agreement with torch fp32 {v['top1_agreement'] * 100:.1f}%"]
    if "top1" in v:
        lines.append(f"  top-1 on labelled images: {v['top1']:.1f}% (torch fp32 {v['top1_ref']:.1f}%)")
    return "\n".join(lines)


def cmd(args) -> int:
    if args.mace_descriptors:
        from ..export.mace import write_descriptors
        for path in write_descriptors(args.mace_descriptors):
            print(f"wrote {path}")
        return 0
    if args.check_mace:
        from ..export.mace import check_mace
        problems = check_mace(args.check_mace, args.runtime)
        if args.json:
            print(json.dumps({"file": args.check_mace, "runtime": args.runtime, "mace_ready": not problems,
                              "problems": problems}, indent=2))
        else:
            print(f"{args.check_mace}: " + (f"MACE-ready (runtime {args.runtime})" if not problems
                                            else f"{len(problems)} problem(s) for MACE runtime {args.runtime}"))
            for p in problems:
                print(f"  - {p}")
        return 0 if not problems else 1
    if not args.format:
        raise ExportError("give --format onnx|tflite|mace (or --check-mace FILE)")
    if not args.model:
        from ..registry import default_model, default_note
        args.model, args.weights = default_model("imagenet")
        print(default_note(args.model, args.weights))
    elif args.weights is None:
        print(f"WARNING: no --weights: exporting a randomly initialised {args.model}. Its latency is real, "
              f"its outputs are meaningless; pass --weights TAG|FILE for a network that classifies.")
    deploy = None
    if args.format == "mace":
        from ..export.mace import Deployment
        deploy = Deployment(runtime=args.runtime, data_type=args.data_type, target_abis=tuple(args.target_abis))
    info = export(args.model, args.format, args.out, weights=args.weights, opset=args.opset,
                  dynamic_batch=args.dynamic_batch, quantize=args.quantize, calib=args.calib,
                  images=args.verify, deploy=deploy, threads=args.threads)
    print(json.dumps(info, indent=2) if args.json else _report(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moga-export", description=__doc__)
    p.add_argument("--model", help="registered name or spec .json (default: efficientnet_lite0 with its "
                                   "ImageNet weights)")
    p.add_argument("--weights", help="tag, file, hf-hub:owner/repo or URL")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--out", default="exported", help="output folder (default: exported)")
    p.add_argument("--opset", type=positive_int, help="ONNX opset (default 17: native HardSwish)")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: symbolic batch dimension")
    p.add_argument("--quantize", choices=("fp16", "int8"), help="TFLite quantization")
    p.add_argument("--calib", metavar="PATH", help="images (folder or file) to calibrate int8 on")
    p.add_argument("--verify", metavar="PATH", help="images to verify on (default: --calib, else a built-in set)")
    p.add_argument("--threads", type=positive_int, help="threads for the verifying runtime")
    m = p.add_argument_group("MACE deployment")
    m.add_argument("--runtime", default="cpu+gpu", choices=("cpu", "gpu", "cpu+gpu"))
    m.add_argument("--data-type", default="fp16_fp32", choices=("fp16_fp32", "fp32_fp32"))
    m.add_argument("--target-abis", nargs="+", default=["arm64-v8a"])
    p.add_argument("--check-mace", metavar="FILE",
                   help="list every MACE violation of an ONNX file for --runtime (default cpu+gpu) and exit")
    p.add_argument("--mace-descriptors", metavar="DIR",
                   help="write the reference MACE deployment files for MoGA-A/B/C (the repo's export/) and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd)
    return p


def main(argv=None) -> int:
    return run(build_parser(), argv)
