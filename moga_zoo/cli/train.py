"""``moga-zoo train``: stand-alone training with a named recipe and per-option overrides."""
from __future__ import annotations

from .common import nonneg_int, positive_float, positive_int

import json

from ..train.recipes import OPTIMIZERS, RECIPES, SCHEDULES


def recipe_from_args(base, args):
    """``base`` with the recipe options the user gave."""
    from ..data.augment import Augment

    aug = base.augment
    if args.cutout is not None or args.no_flip:
        aug = Augment(aug.pad, flip=not args.no_flip, cutout=args.cutout if args.cutout is not None else aug.cutout)
    return base.override(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         weight_decay=args.weight_decay, schedule=args.schedule,
                         warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
                         dropout=args.dropout, drop_path=args.drop_path, ema_decay=args.ema_decay,
                         grad_clip=args.grad_clip, augment=aug)


def set_threads(args) -> None:
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)


def cmd_train(args) -> int:
    from ..train.run import default_command, train

    set_threads(args)
    name = args.recipe or ("imagenet-moga" if args.imagenet else "cifar10")
    recipe = recipe_from_args(RECIPES[name], args)
    result = train(args.model, cifar10=args.cifar10, imagenet=args.imagenet, out=args.out, recipe=recipe, resume=args.resume,
                   val_size=args.val_size, seed=args.seed, checkpoint_minutes=args.checkpoint_minutes,
                   checkpoint_steps=args.checkpoint_steps, micro_batches=args.micro_batches,
                   workers=args.workers, command=default_command())
    if result:
        print(json.dumps(result, indent=2) if args.json else
              f"{result['spec']}: top-1 {result['final']['val_top1']:.2f}% on {result['eval_set']} after "
              f"{result['epochs']} epochs ({result['wall_seconds'] / 60:.0f} min); weights in {args.out}")
    return 0


def cmd_ship(args) -> int:
    from ..train.manifest import ship

    e = ship(args.run, model=args.model, tag=args.tag, cifar10=args.cifar10)
    print(f"weights/{e['file']}: test top-1 {e['test_top1']:.2f}% top-5 {e['test_top5']:.2f}% on "
          f"{e['test_images']} images; weights/manifest.json updated (load: create_model('{e['model']}', "
          f"weights='{e['tag']}'))")
    return 0


def add_subcommands(sub) -> None:
    s = sub.add_parser("ship", help="put a finished training run's weights into weights/ with a manifest entry")
    s.add_argument("run", help="the run folder of moga-zoo train")
    s.add_argument("--model", required=True, help="the registered model the weights belong to")
    s.add_argument("--tag", default="cifar10", help="the weight tag to register (default cifar10)")
    s.add_argument("--cifar10", metavar="PATH", required=True, help="CIFAR-10, to measure the test accuracy")
    s.set_defaults(func=cmd_ship)

    s = sub.add_parser("train", help="train a model (CIFAR-10 on CPU, ImageNet on GPUs; torchrun for several "
                                     "processes)",
                       description="Train a registered model or spec file. On CIFAR-10 a 224 spec trains in "
                                   "its CIFAR-10 form (stem stride 1, 32x32 input, 10 classes).")
    s.add_argument("--model", required=True, help="registered name or spec .json")
    add_data_args(s)
    s.add_argument("--out", required=True, help="run folder: checkpoint, logs, curve, weights")
    s.add_argument("--recipe", choices=sorted(RECIPES),
                   help="named recipe (default: cifar10 or imagenet-moga, by the data); the options below "
                        "override its fields")
    s.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_recipe_args(s)
    s.add_argument("--val-size", type=nonneg_int, default=0,
                   help="hold this many training images out for the curve (default 0: the test split)")
    add_run_args(s)
    s.set_defaults(func=cmd_train)


def add_data_args(s) -> None:
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--cifar10", metavar="PATH",
                   help="CIFAR-10: python/binary release, <split>/<class>/ folders, or a zip of them (held "
                        "in memory)")
    g.add_argument("--imagenet", metavar="PATH",
                   help="ImageNet root: train/<synset>/*.JPEG (streamed from disk) and val/ in any layout "
                        "moga-eval reads")


def add_recipe_args(s) -> None:
    r = s.add_argument_group("recipe overrides")
    r.add_argument("--epochs", type=positive_int)
    r.add_argument("--batch-size", type=positive_int, help="global batch (split over torchrun processes)")
    r.add_argument("--optimizer", choices=OPTIMIZERS)
    r.add_argument("--lr", type=positive_float, help="peak learning rate for the global batch")
    r.add_argument("--schedule", choices=SCHEDULES)
    r.add_argument("--warmup-epochs", type=float)
    r.add_argument("--weight-decay", type=float, help="not applied to BN parameters or biases")
    r.add_argument("--label-smoothing", type=float)
    r.add_argument("--dropout", type=float)
    r.add_argument("--drop-path", type=float, help="stochastic depth rate of the last block")
    r.add_argument("--ema-decay", type=float, help="EMA of weights (0 disables)")
    r.add_argument("--grad-clip", type=float)
    r.add_argument("--cutout", type=nonneg_int, help="Cutout square size in pixels (0 disables)")
    r.add_argument("--no-flip", action="store_true")


def add_run_args(s) -> None:
    s.add_argument("--micro-batches", type=positive_int, default=1, help="accumulate each batch in N parts")
    s.add_argument("--seed", type=nonneg_int, default=0)
    s.add_argument("--threads", type=positive_int, help="torch compute threads")
    s.add_argument("--workers", type=positive_int, default=2, help="decoding threads")
    s.add_argument("--checkpoint-minutes", type=positive_float, default=5.0,
                   help="the most work a crash (kill -9, power loss) can lose")
    s.add_argument("--checkpoint-steps", type=positive_int, help="also checkpoint every N optimizer steps")
    s.add_argument("--json", action="store_true")
