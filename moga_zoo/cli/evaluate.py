"""``moga-eval``: top-1/top-5 of a model or an exported file on ImageNet, CIFAR-10 or class folders."""
from __future__ import annotations

import argparse
import json
import sys

from ..evaluate import BadImagesError, evaluate_source
from ..runners import BACKENDS
from .common import positive_int, run


def _choose_model(args) -> None:
    """No --model (torch backend): the default model with real weights for the data; a model
    without --weights would measure a random network, which is refused."""
    from ..registry import available_tags, default_model, default_note, resolve_model
    if args.artifact and args.backend == "torch":
        suffix = str(args.artifact).lower()
        args.backend = "tflite" if suffix.endswith(".tflite") else "onnxruntime" if suffix.endswith(".onnx") else None
        if args.backend is None:
            raise ValueError(f"cannot tell the backend of {args.artifact} from its name: pass --backend "
                             f"onnxruntime (.onnx) or tflite (.tflite)")
    if args.backend != "torch":
        return
    if args.model is None:
        args.model, args.weights = default_model("cifar10" if args.cifar10 else "imagenet")
        print(default_note(args.model, args.weights))
    elif args.weights is None and not args.random_init:
        entry = resolve_model(args.model)
        tags = available_tags(args.model) if entry.spec.name == args.model else []
        raise ValueError(f"no --weights for {args.model}: the accuracy of a randomly initialised network is "
                         f"meaningless. Pass --weights {'|'.join(tags) + '|' if tags else ''}FILE "
                         f"(or --random-init to measure it anyway)")


def cmd(args) -> int:
    _choose_model(args)
    overrides = {"resize": args.resize, "crop": args.crop, "interpolation": args.interpolation,
                 "mean": tuple(args.mean) if args.mean else None, "std": tuple(args.std) if args.std else None}
    try:
        res = evaluate_source(model=args.model, weights=args.weights, num_classes=args.num_classes,
                              backend=args.backend, artifact=args.artifact, imagenet=args.imagenet,
                              cifar10=args.cifar10, split=args.split, data=args.data, overrides=overrides,
                              threads=args.threads, batch_size=args.batch_size, workers=args.workers,
                              limit=args.limit, skip_bad=args.skip_bad, predictions=args.predictions,
                              progress=None)
        code = 0
    except BadImagesError as e:
        res, code = e.result, 1
        print(f"moga-eval: error: {e}", file=sys.stderr)
    print(json.dumps(res.to_dict(), indent=2) if args.json else res.report())
    return 130 if res.partial else code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moga-eval", description=__doc__)
    p.add_argument("--model", help="registered name or spec .json (torch backend; default: a model with "
                                   "real weights for the data, e.g. efficientnet_lite0 for ImageNet)")
    p.add_argument("--random-init", action="store_true", help="allow evaluating a model without weights")
    p.add_argument("--weights", help="tag, file, hf-hub:owner/repo or URL")
    p.add_argument("--num-classes", type=positive_int)
    src = p.add_argument_group("data (exactly one)")
    src.add_argument("--imagenet", metavar="PATH", help="ImageNet val in any common layout")
    src.add_argument("--cifar10", metavar="PATH", help="CIFAR-10 python/binary release, folders or zip")
    src.add_argument("--split", choices=("test", "train"), default="test")
    src.add_argument("--data", metavar="PATH", help="class folders named like the model's labels")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--artifact", metavar="FILE", help="exported .onnx/.tflite (with its sidecar)")
    p.add_argument("--limit", type=positive_int, help="N images evenly spaced over the set (deterministic)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--workers", type=positive_int, default=2, help="decoding threads")
    p.add_argument("--threads", type=positive_int, help="backend compute threads")
    pre = p.add_argument_group("preprocessing overrides (default: the model's config)")
    pre.add_argument("--resize", type=positive_int)
    pre.add_argument("--crop", type=positive_int)
    pre.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest", "lanczos", "box"))
    pre.add_argument("--mean", type=float, nargs=3)
    pre.add_argument("--std", type=float, nargs=3)
    p.add_argument("--predictions", metavar="FILE", help="per-image top-5 CSV")
    p.add_argument("--skip-bad", action="store_true", help="evaluate without unreadable images")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd)
    return p


def main(argv=None) -> int:
    return run(build_parser(), argv)
