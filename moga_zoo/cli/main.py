"""``moga-zoo``: list, inspect and run models; latency tables and benchmarks."""
from __future__ import annotations

import argparse
import json
import sys

from ..registry import create_model, get_entry, list_models, resolve_model
from ..sizes import count
from ..summary import describe, format_table
from .common import positive_int, run


def cmd_list(args) -> int:
    rows = []
    for name in list_models():
        e = get_entry(name)
        params, macs = count(e.spec)
        tags = {t: ("available" if w.source is not None else "needs a file from the user")
                for t, w in sorted(e.cfg.weights.items())}
        rows.append({"name": name, "params": params, "macs": macs, "weights": tags,
                     "paper_top1": e.cfg.paper.get("top1"), "description": e.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<20}{'params':>12}{'MACs':>14}  {'paper top-1':>11}  {'weights here':<14}description")
    for r in rows:
        top1 = f"{r['paper_top1']:.1f}" if r["paper_top1"] else "-"
        here = ",".join(t for t, v in r["weights"].items() if v == "available") or "-"
        print(f"{r['name']:<20}{r['params']:>12,}{r['macs']:>14,}  {top1:>11}  {here:<14}{r['description']}")
    return 0


def cmd_info(args) -> int:
    entry = resolve_model(args.model)
    spec = entry.spec.with_classes(args.num_classes) if args.num_classes else entry.spec
    d = describe(spec, args.input_size)
    d["pretrained_cfg"] = entry.cfg.to_dict()
    print(json.dumps(d, indent=2) if args.json else format_table(d))
    return 0


def cmd_predict(args) -> int:
    from ..inference import default_image, predict

    from ..registry import default_model, default_note

    images = args.images or [default_image()]
    if args.model is None:
        args.model, args.weights = default_model("imagenet") if args.weights is None else ("efficientnet_lite0",
                                                                                          args.weights)
        if not args.json:
            print(default_note(args.model, args.weights))
    model = create_model(args.model, weights=args.weights)
    results = predict(model, images, topk=args.topk, skip_bad=True)
    bad = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        if model.weights_info is None:
            print("WARNING: no --weights: a randomly initialised network; these classes mean nothing")
        for r in results:
            print(r["image"])
            if "error" in r:
                print(f"  unreadable: {r['error']}")
                continue
            for t in r["top"]:
                print(f"  {t['prob'] * 100:6.2f}%  {t['index']:>4}  {t['label']}")
    if bad:
        print(f"moga-zoo predict: error: {len(bad)} of {len(results)} image(s) could not be read: "
              f"{', '.join(r['image'] for r in bad[:5])}", file=sys.stderr)
        return 1
    return 0


def cmd_push(args) -> int:
    from dataclasses import replace

    from ..data.preprocess import CIFAR10_PREPROCESS
    from ..train.hub import push

    model = create_model(args.model, weights=args.weights)
    if args.data == "cifar10":
        model.pretrained_cfg = replace(model.pretrained_cfg, preprocess=CIFAR10_PREPROCESS, labels="cifar10")
        model.pretrained_cfg = model.pretrained_cfg.for_weights(None, model.num_classes)
    tag = model.pretrained_cfg.weights.get(args.weights) if args.weights else None
    meta = dict(tag.meta) if tag else {}
    metrics = {k: v for k, v in meta.items() if k.startswith("test_")}
    folder = push(model, repo_id=args.repo_id, local_dir=args.local_dir, dry_run=args.dry_run, metrics=metrics,
                  command=meta.get("command"), recipe=meta.get("recipe"))
    print(f"{'wrote' if args.dry_run else 'uploaded'} {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})"
          + ("" if args.dry_run else f" to https://huggingface.co/{args.repo_id}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moga-zoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="registered models with sizes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("info", help="Table-2-style per-layer table of a model or spec file")
    s.add_argument("model", help="registered name or spec .json file")
    s.add_argument("--input-size", type=positive_int, help="default: the spec's own (224, or 32 for CIFAR-10 forms)")
    s.add_argument("--num-classes", type=positive_int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("predict", help="top-5 classes for images")
    s.add_argument("images", nargs="*", help="image files (default: a photo shipped with matplotlib)")
    s.add_argument("--model", help="registered name or spec .json (default: efficientnet_lite0 with its "
                                   "ImageNet weights)")
    s.add_argument("--weights", help="tag (e.g. imagenet), file, hf-hub:owner/repo or URL")
    s.add_argument("--topk", type=positive_int, default=5)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)
    s = sub.add_parser("push", help="a Hugging Face Hub folder (model.safetensors, config.json, model card), uploaded")
    s.add_argument("model", help="registered name or spec .json")
    s.add_argument("--weights", required=True, help="tag, file, hf-hub:owner/repo or URL")
    s.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    s.add_argument("--local-dir", help="write the folder here (and keep it)")
    s.add_argument("--dry-run", action="store_true", help="write the folder, upload nothing")
    s.add_argument("--data", choices=("cifar10",), help="the weights' data set, when --weights is a file: its "
                                                        "preprocessing and label names go into config.json")
    s.set_defaults(func=cmd_push)
    from .latency import add_subcommands
    add_subcommands(sub)
    from . import search, train
    train.add_subcommands(sub)
    search.add_subcommands(sub)
    return p


def main(argv=None) -> int:
    return run(build_parser(), argv)
