"""``moga-zoo lut ...`` and ``moga-zoo bench``: argument parsing and printing only."""
from __future__ import annotations

from .common import nonneg_int, positive_int

import json
from pathlib import Path

from ..specs import NUM_CHOICES
from ..latency.timing import BACKENDS


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").split()]


def cmd_build(args) -> int:
    from ..latency.build import build_table
    table = build_table(args.backend, threads=args.threads, spinning=args.spinning, choices=_ints(args.choices),
                        calibrate=args.calibrate, rounds=args.rounds, reps=args.reps, size=args.input_size,
                        force=args.force)
    table.save(args.out)
    cal = table.calibration
    print(f"wrote {args.out}: {len(table.entries)} entries ({args.backend}, {args.threads} thread(s))"
          + (f"; calibration scale {cal['scale']:.3f} offset {cal['offset']:+.3f} ms on {cal['n']} networks" if cal else ""))
    noise = table.meta["noise"]
    print(f"machine noise: round-to-round variation {noise['round_cv_median']:.1%}, other load "
          f"{noise['other_load_before']:.1f} on {noise['cpus']} CPUs")
    if "warning" in noise:
        print(f"WARNING: {noise['warning']}")
    return 0


def cmd_validate(args) -> int:
    from ..latency.table import LatencyTable
    from ..latency.validate import validate_table
    table = LatencyTable.load(args.table)
    png = args.png or str(Path(args.table).with_suffix(".validation.png"))
    res = validate_table(table, args.n, rounds=args.rounds, reps=args.reps, png=png)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    raw = res["raw"]
    print(f"{res['n']} random architectures, {res['backend']}, {res['threads']} thread(s):")
    print(f"  prediction{' (calibrated)' if res['calibrated'] else ''}: RMSE {res['rmse_ms']:.3f} ms, "
          f"MAPE {res['mape']:.2f}%, Kendall tau {res['kendall_tau']:.3f}, within 10%: {res['within_10pct'] * 100:.0f}%")
    print(f"  plain sum of entries:     RMSE {raw['rmse_ms']:.3f} ms, MAPE {raw['mape']:.2f}%, "
          f"Kendall tau {raw['kendall_tau']:.3f}")
    print(f"  scatter: {res['png']}")
    return 0


def cmd_predict(args) -> int:
    from ..registry import resolve_model
    from ..specs import from_choices
    from ..latency.table import LatencyTable
    table = LatencyTable.load(args.table)
    spec = from_choices(_ints(args.choices)) if args.choices else resolve_model(args.model).spec
    out = {"model": spec.name, "predicted_ms": table.predict(spec), "sum_ms": table.raw(spec)}
    print(json.dumps(out) if args.json else f"{spec.name}: {out['predicted_ms']:.3f} ms predicted "
                                             f"(sum of entries {out['sum_ms']:.3f} ms)")
    return 0


def cmd_import(args) -> int:
    from ..latency.parsers import merge, parse_mace_log, parse_tflite_log
    from ..latency.table import LatencyTable
    if args.ofa:
        table = LatencyTable.from_ofa_yaml(Path(args.ofa).read_text(), source=str(args.ofa))
    elif args.tflite_log:
        if not args.manifest:
            raise ValueError("--tflite-log needs --manifest (written by 'moga-zoo lut export-rows')")
        table = parse_tflite_log(Path(args.tflite_log).read_text(), args.manifest, source=str(args.tflite_log))
    elif args.mace_log:
        from ..registry import resolve_model
        if len(args.mace_log) != len(args.model or []):
            raise ValueError("give one --model (the network each MACE log measured) per --mace-log")
        table = merge([parse_mace_log(Path(log).read_text(), resolve_model(m).spec, source=str(log))
                       for log, m in zip(args.mace_log, args.model)])
    else:
        raise ValueError("give --ofa FILE, --tflite-log LOG --manifest FILE, or --mace-log LOG --model NAME")
    table.save(args.out)
    print(f"wrote {args.out}: {len(table.entries)} entries from {table.meta.get('backend')}")
    return 0


def cmd_export(args) -> int:
    from ..latency.table import LatencyTable
    from ..files import write_text_atomic
    write_text_atomic(Path(args.ofa), LatencyTable.load(args.table).to_ofa_yaml())
    print(f"wrote {args.ofa} (Once-for-All YAML)")
    return 0


def cmd_export_rows(args) -> int:
    from ..latency.parsers import export_rows
    manifest = export_rows(args.out, args.format, _ints(args.choices), args.input_size)
    print(f"wrote {manifest} and the per-row files beside it")
    return 0


def cmd_bench(args) -> int:
    from ..registry import list_models
    from ..latency.bench import bench, format_rows, op_breakdown, to_csv
    models = list_models() if args.models == ["all"] else args.models
    rows = bench(models, args.backends, threads=args.threads, rounds=args.rounds, reps=args.reps,
                 batch=args.batch, spinning=args.spinning)
    if args.csv:
        from ..files import write_text_atomic
        write_text_atomic(Path(args.csv), to_csv(rows))
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    if args.breakdown:
        op_breakdown(models, args.breakdown, threads=args.threads)
        print(f"op-type breakdown: {Path(args.breakdown) / 'breakdown.png'} and breakdown.json")
    return 0


def add_subcommands(sub) -> None:
    lut = sub.add_parser("lut", help="latency lookup tables: build, validate, predict, import, export")
    ls = lut.add_subparsers(dest="lut_command", required=True)
    all_choices = " ".join(map(str, range(NUM_CHOICES)))

    s = ls.add_parser("build", help="measure every choice block and fixed row on this machine")
    s.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    s.add_argument("--threads", type=positive_int, default=1)
    s.add_argument("--spinning", action="store_true", help="let idle onnxruntime threads spin")
    s.add_argument("--choices", default=all_choices, help="Table-1 choices to cover (default: all 12)")
    s.add_argument("--calibrate", type=nonneg_int, default=10, help="whole networks timed to fit scale/offset (0: none)")
    s.add_argument("--rounds", type=positive_int, default=100)
    s.add_argument("--reps", type=positive_int, default=1)
    s.add_argument("--input-size", type=positive_int, default=224)
    s.add_argument("--force", action="store_true",
                   help="keep a table measured on a busy machine (marked as such in its metadata)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_build)

    s = ls.add_parser("validate", help="predicted vs measured on random architectures (+ scatter PNG)")
    s.add_argument("table")
    s.add_argument("--n", type=positive_int, default=50)
    s.add_argument("--rounds", type=positive_int, default=10)
    s.add_argument("--reps", type=positive_int, default=20)
    s.add_argument("--png", help="scatter plot path (default: <table>.validation.png)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_validate)

    s = ls.add_parser("predict", help="predicted latency of a model or choice vector")
    s.add_argument("table")
    s.add_argument("--model", default="moga_a")
    s.add_argument("--choices", help="14 Table-1 indices instead of --model")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = ls.add_parser("import", help="a table from Once-for-All YAML or phone benchmark logs")
    s.add_argument("--ofa", help="Once-for-All latency YAML")
    s.add_argument("--tflite-log", help="concatenated benchmark_model output")
    s.add_argument("--manifest", help="manifest.json from 'lut export-rows'")
    s.add_argument("--mace-log", nargs="+", help="MACE --benchmark outputs, one per network")
    s.add_argument("--model", nargs="+", help="the network (name or spec file) of each MACE log")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_import)

    s = ls.add_parser("export", help="write a table as Once-for-All YAML")
    s.add_argument("table")
    s.add_argument("--ofa", required=True)
    s.set_defaults(func=cmd_export)

    s = ls.add_parser("export-rows", help="one file per table key (+ manifest, adb script) for a phone")
    s.add_argument("--format", choices=("tflite", "onnx"), default="tflite")
    s.add_argument("--choices", default=all_choices)
    s.add_argument("--input-size", type=positive_int, default=224)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_export_rows)

    s = sub.add_parser("bench", help="params, MACs, latency and throughput per model and backend")
    s.add_argument("--models", nargs="+", default=["all"])
    s.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "tflite", "tflite-int8"],
                   choices=BACKENDS)
    s.add_argument("--threads", type=positive_int, default=2)
    s.add_argument("--rounds", type=positive_int, default=7)
    s.add_argument("--reps", type=positive_int, default=10)
    s.add_argument("--batch", type=nonneg_int, default=32, help="throughput batch size (0: skip)")
    s.add_argument("--spinning", action="store_true")
    s.add_argument("--breakdown", metavar="DIR", help="write an onnxruntime op-type breakdown (PNG, JSON)")
    s.add_argument("--csv", metavar="FILE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_bench)
