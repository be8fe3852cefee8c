"""``momos train|reproduce|sweep|frontier|encode|decode|size``: a thin command line over
the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kcomplex.files import regular_file, write_atomic

__all__ = ["main"]

#: The only suffix ``momos decode`` writes: the content is safetensors, and readers such as
#: ``kcomplex analyze`` choose the format by the suffix.
DECODED_SUFFIX = ".safetensors"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help line ends with its default.

    argparse's formatter prints ``(default: None)`` for options whose default is decided
    later; their help says the default in words instead, and flags read ``(default: off)``.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default is None
                or action.default is argparse.SUPPRESS):
            return text
        if action.nargs == 0 and action.default is False:
            return f"{text} (default: off)"
        value = action.default
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value)) if value else "none"
        return f"{text} (default: {value})"


def _threads(text: str) -> int | str:
    """``--threads``: "auto" or a positive integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momos", description="Mosaic-of-Motifs: project, encode and measure models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="encode a checkpoint exactly, projected onto motifs "
                                      "(--s with --capacity or --k) or as it is",
                       formatter_class=_HelpFormatter)
    e.add_argument("checkpoint", help=".pt/.pth/.bin state dict, .safetensors, .npz")
    e.add_argument("out", help="output .momos file (written atomically)")
    e.add_argument("--s", type=int, help="block size: project onto motifs first (default: "
                                         "none, every tensor stored with its shortest exact "
                                         "code)")
    size = e.add_mutually_exclusive_group()
    size.add_argument("--capacity", type=float,
                      help="k = floor(capacity * m); with --s give --capacity or --k "
                           "(no default)")
    size.add_argument("--k", type=int, help="number of motifs; with --s give --capacity or --k "
                                            "(no default)")
    e.add_argument("--seed", type=int, default=0, help="seed of the motif sampling")
    e.add_argument("--q", type=int, default=32,
                   help="bits per motif value: 32 (float32), 16 (float16/bfloat16 if exact) "
                        "or 2..15 (the bank is quantized by the projection, then stored "
                        "exactly)")
    e.add_argument("--exclude", nargs="*", default=(), metavar="TOKEN",
                   help="tensors whose name contains a token (a substring) are not "
                        "projected: they are stored with their shortest exact code")
    e.add_argument("--ptq", type=int, metavar="Q",
                   help="post-training quantization at Q bits before coding (no --s): the "
                        "weights momos.state_targets names (floating, >= 2-D, '.weight', not "
                        "bn/norm) rounded per tensor (default: none)")
    e.add_argument("--levels", default="uniform", choices=("uniform", "kmeans"),
                   help="levels of --ptq: QAT's uniform grid or 1-D k-means per tensor")
    e.add_argument("--include-buffers", action="store_true",
                   help="also project tensors named like buffers (batch-norm running_mean/"
                        "running_var, position_ids, ...); by default they are stored as "
                        "they are, as MoMos.project(module) pools parameters only")
    d = sub.add_parser("decode", help="decode a .momos file into a .safetensors file",
                       description="Decode a .momos file into a .safetensors file (the only "
                                   "output format: OUT must end in .safetensors).",
                       formatter_class=_HelpFormatter)
    d.add_argument("path", help="the .momos file")
    d.add_argument("out", help="output file, written atomically; its name must end in "
                               ".safetensors")
    z = sub.add_parser("size", help="itemized size of a .momos file, in bits",
                       formatter_class=_HelpFormatter)
    z.add_argument("path", help="the .momos file")
    for p in (d, z):
        p.add_argument("--max-numel", type=int, default=1 << 28, metavar="N",
                       help="refuse streams that declare more weights than this (it bounds "
                            "the memory decoding takes: 4 bytes per weight)")
    _train_parser(sub)
    _experiment_parsers(sub)
    return parser


def _common(p: argparse.ArgumentParser, out: str,
            estimators: Sequence[str] = ("bdm", "gzip", "bz2", "lzma")) -> None:
    """Options shared by train, reproduce, sweep and frontier."""
    from .data import DATASETS
    from .models import MODELS

    p.add_argument("--model", default="mlp", choices=sorted(MODELS), help="the network")
    p.add_argument("--dataset", default="digits", choices=sorted(DATASETS),
                   help="digits is embedded; the others are read from --data-dir")
    p.add_argument("--data-dir", help="directory with MNIST/Fashion-MNIST IDX or CIFAR-10 "
                                      "files (default: none; needed for those)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, "
                                                       "initialization and training")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: cuda when available, else cpu")
    p.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                   help="torch CPU threads; auto: 1 for the MLP on the CPU (its small steps "
                        "run 10-20x slower with one thread per core on a busy machine), "
                        "else torch's own setting (one per core)")
    p.add_argument("--out", default=out, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue the run(s) in --out")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars: one line per finished epoch and run on stderr, "
                        "as when stderr is not a terminal")
    p.add_argument("--estimators", nargs="*", default=list(estimators),
                   help="kcomplex estimators measured every epoch")


def _train_parser(sub) -> None:
    from .config import METHODS

    t = sub.add_parser("train", help="train one run, measuring complexity after every epoch",
                       formatter_class=_HelpFormatter)
    _common(t, "momos-run")
    t.add_argument("--method", default="momos", choices=METHODS, help="training method")
    t.add_argument("--s", type=int, default=2, help="block size (MoMos)")
    size = t.add_mutually_exclusive_group()
    size.add_argument("--capacity", type=float,
                      help="k/m (MoMos; default 0.05 unless --k is given)")
    size.add_argument("--k", type=int, help="number of motifs (MoMos; default: from "
                                            "--capacity)")
    t.add_argument("--q", type=int, default=8,
                   help="bits of QAT (qat, momos+qat) and post-training quantization (ptq)")
    t.add_argument("--levels", default="uniform", choices=("uniform", "kmeans"),
                   help="ptq levels: QAT's uniform grid or 1-D k-means per tensor")
    t.add_argument("--bank-q", type=int, metavar="BITS",
                   help="bits per motif value (MoMos; default: --q for momos+qat, else 32)")
    t.add_argument("--kmeans-iters", type=int, default=0, metavar="N",
                   help="Lloyd steps refining each projection's sampled bank (MoMos)")
    t.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                   help="epochs after the last projection training the bank with the mosaic "
                        "frozen (method momos)")
    t.add_argument("--finetune-lr", type=float, metavar="LR",
                   help="rate of the fine-tuning epochs (default: the run's --lr)")
    t.add_argument("--no-force-zero", action="store_true", help="no all-zero motif 0")
    t.add_argument("--project-every", default="epoch", choices=("epoch", "step"),
                   help="when MoMos projects the weights")
    t.add_argument("--epochs", type=int, default=30, help="training epochs")
    t.add_argument("--batch-size", type=int, default=128, help="training batch size")
    t.add_argument("--optimizer", choices=("adamw", "sgd"),
                   help="default per model: adamw for mlp and vit, sgd for resnet20")
    t.add_argument("--lr", type=float, help="learning rate (default per model: 3e-4 for "
                                            "adamw models, 0.1 for resnet20)")
    t.add_argument("--weight-decay", type=float, help="default per model: 1e-2 for adamw "
                                                      "models, 1e-4 for resnet20")
    t.add_argument("--schedule", default="cosine", choices=("cosine", "constant"),
                   help="learning-rate schedule")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (gloo on CPU, one GPU each "
                        "with nccl on CUDA); rank 0 writes the files")


def _experiment_parsers(sub) -> None:
    r = sub.add_parser("reproduce", help="baseline, QAT and two MoMos runs compared in one table",
                       formatter_class=_HelpFormatter)
    _common(r, "momos-reproduce")
    r.add_argument("--epochs", type=int, help="epochs per run (default 30; 3 with --quick)")
    r.add_argument("--quick", action="store_true", help="3 epochs: a fast smoke run")
    r.add_argument("--seeds", type=int, nargs="+",
                   help="several seeds: runs in OUT/seed<N>/, mean ± std in OUT/summary.csv "
                        "(default: the one --seed)")
    r.add_argument("--no-plots", action="store_true", help="no figures")
    w = sub.add_parser("sweep", help="MoMos over an s x capacity grid (the paper's by default)",
                       formatter_class=_HelpFormatter)
    _common(w, "momos-sweep")
    w.add_argument("--s", type=int, nargs="+", help="block sizes (default 2 4 ... 128)")
    w.add_argument("--capacity", type=float, nargs="+",
                   help="capacities (default 0.01 0.05 0.1 0.2 0.3)")
    w.add_argument("--method", default="momos", choices=("momos", "momos+qat"),
                   help="the MoMos variant of every grid run")
    w.add_argument("--epochs", type=int, help="epochs per run (default 30; 3 with --quick)")
    w.add_argument("--quick", action="store_true", help="3 epochs per run")
    w.add_argument("--no-baseline", action="store_true", help="skip the baseline run")
    w.add_argument("--no-plots", action="store_true", help="no figures")
    f = sub.add_parser("frontier", help="accuracy against exact bits: baseline, PTQ, QAT and "
                                        "MoMos variants in one table, Pareto front marked",
                       formatter_class=_HelpFormatter)
    _common(f, "momos-frontier", estimators=())
    f.add_argument("--epochs", type=int, help="epochs per run (default 30; 3 with --quick)")
    f.add_argument("--quick", action="store_true", help="3 epochs per run")
    f.add_argument("--seeds", type=int, nargs="+",
                   help="several seeds: runs in OUT/seed<N>/, mean ± std per run "
                        "(default: the one --seed)")
    f.add_argument("--runs", nargs="+", metavar="NAME",
                   help="a subset of the grid (default: all of momos.frontier.FRONTIER_RUNS)")
    f.add_argument("--no-plots", action="store_true", help="no figure")


def _print_sizes(info: dict) -> None:
    n = info["n_weights"]
    rows = [
        ("header", info["header_bits"]),
        ("motif bank", info["bank_bits"]),
        ("mosaic (" + ("entropy-coded" if info["mosaic_coded"] else "fixed width") + ")",
         info["mosaic_bits"]),
        ("stored tensors (own codes)", info["leftover_bits"]),
        ("total", info["total_bits"]),
    ]
    if info["m"]:
        print(f"s={info['s']} k={info['k']} q={info['q']} blocks={info['m']:,} weights={n:,}")
    else:
        print(f"no motifs: every tensor stored with its own code; weights={n:,}")
    codes = info.get("codes", {})
    for label, bits in rows:
        print(f"  {label:<28}{bits:>14,} bits")
        if label.startswith("stored tensors"):
            for code, code_bits in codes.items():
                print(f"    {code:<26}{code_bits:>14,} bits")
    print(f"  {'bits per weight':<28}{info['total_bits'] / n:>14.4f}")
    print(f"  {'vs 32-bit weights (RAC)':<28}{32 * n / info['total_bits']:>14.3f}")


def _encode(args: argparse.Namespace) -> None:
    import torch

    from kcomplex import load_weights

    from .codec import encode, stream_info
    from .projection import MoMos
    from .ptq import post_training_quantize

    if args.s is None and (args.k is not None or args.capacity is not None):
        raise ValueError("--k and --capacity size the motif bank: give --s too (or neither, "
                         "to store every tensor with its shortest exact code)")
    if args.s is not None and args.k is None and args.capacity is None:
        raise ValueError("--s projects onto motifs: give --capacity or --k too")
    if args.ptq is not None and args.s is not None:
        raise ValueError("--ptq codes quantized weights, --s projects them onto motifs: "
                         "give one of them")
    state = {name: torch.from_numpy(arr.astype("float32"))
             for name, arr in load_weights(args.checkpoint).items()}
    if args.ptq is not None:
        state.update(post_training_quantize(state, args.ptq, args.levels))
    if args.s is None:
        data = encode(state)
    else:
        pooled = {k: v for k, v in state.items() if not any(t in k for t in args.exclude)}
        mm = MoMos(args.s, k=args.k, capacity=args.capacity, seed=args.seed,
                   bank_bits=args.q if args.q < 16 else 32)
        mm.project(pooled, include_buffers=args.include_buffers)
        data = encode(state, mm, q=args.q)
    write_atomic(args.out, data)
    print(f"wrote {args.out}")
    _print_sizes(stream_info(data, max_numel=max(1, sum(t.numel() for t in state.values()))))


def _decode(args: argparse.Namespace) -> None:
    from safetensors.torch import save

    from .codec import decode

    # Refused before any work: under another name the file would be read as another format.
    if not args.out.lower().endswith(DECODED_SUFFIX):
        raise ValueError(f"decode writes safetensors: name the output file {args.out!r} "
                         f"with the suffix {DECODED_SUFFIX}, e.g. "
                         f"{os.path.splitext(args.out)[0] + DECODED_SUFFIX!r}")
    tensors = decode(regular_file(args.path, ".momos file").read_bytes(),
                     max_numel=args.max_numel)
    write_atomic(args.out, save({k: v.contiguous() for k, v in tensors.items()}))
    print(f"wrote {args.out}: {len(tensors)} tensors")


def _size(args: argparse.Namespace) -> None:
    from .codec import stream_info

    _print_sizes(stream_info(regular_file(args.path, ".momos file").read_bytes(),
                             max_numel=args.max_numel))


def _train(args: argparse.Namespace) -> None:
    from .config import TrainConfig
    from .progress import epoch_printer
    from .threads import cpu_threads, resolve_threads
    from .train import train

    if args.nproc != 1:
        _launch(args)
        return
    cfg = TrainConfig(
        model=args.model, dataset=args.dataset, method=args.method, s=args.s,
        capacity=args.capacity, k=args.k, q=args.q, levels=args.levels, bank_q=args.bank_q,
        kmeans_iters=args.kmeans_iters, finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr, force_zero=not args.no_force_zero,
        project_every=args.project_every, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, seed=args.seed, device=args.device, data_dir=args.data_dir,
        estimators=tuple(args.estimators))
    lead = os.environ.get("RANK", "0") == "0"  # under torchrun or --nproc: rank 0 reports
    bars = not args.no_progress and sys.stderr.isatty()
    callback = None
    if lead and not bars:
        size = f"k={cfg.k}" if cfg.k is not None else f"c={cfg.capacity:g}"
        label = f"{cfg.method} s={cfg.s} {size}" if cfg.uses_momos else cfg.method
        callback = epoch_printer(label, cfg.total_epochs)
    with cpu_threads(resolve_threads(args.threads, cfg.model, cfg.device)):
        res = train(cfg, args.out, resume=args.resume, progress=bars, callback=callback)
    if not lead:
        return
    summary = res.summary
    dl = summary.description_length
    print(f"{cfg.method} {cfg.model}/{cfg.dataset}: {res.final.epoch} epochs, test acc "
          f"{summary.test_acc:.4f} (best val {summary.best_val_acc:.4f} at epoch "
          f"{summary.best_epoch})")
    for key, ratio in summary.complexity_ratio.items():
        print(f"  {key + ' trained/init':<24}{ratio:>14.4f}")
    print(f"  {'exact bits (' + dl['coded'] + ')':<24}{dl['total_bits']:>14,}")
    print(f"  {'paper bound bits':<24}{dl['bound_bits']:>14,}")
    print(f"  {'trivial bits (32 n)':<24}{dl['trivial_bits']:>14,}")
    print(f"wrote {args.out}/results.json")


def _launch(args: argparse.Namespace) -> None:
    """``momos train --nproc N``: N worker processes, started as torchrun starts them.

    This process hosts the rendezvous store on a port the system picks (so no port is
    guessed) and every worker gets torchrun's variables, so :func:`momos.train` joins the
    group exactly as under ``torchrun --nproc_per_node N -m momos train ...``.
    """
    import torch
    import torch.multiprocessing as mp
    from torch.distributed import TCPStore

    n = args.nproc
    if n < 1:
        raise ValueError(f"--nproc must be a positive integer, got {n}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--nproc inside torchrun: let torchrun start the processes "
                         "(--nproc_per_node) and leave out --nproc")
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        count = torch.cuda.device_count()
        if count < n:
            fewer = f"--nproc {count} or " if count else ""
            raise ValueError(f"--nproc {n} on CUDA needs one GPU per process, but {count} "
                             f"are visible; use {fewer}--device cpu")
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    # One share of the cores per worker, read by torch and numba as they are imported
    # (numba's kernels also follow torch's budget: momos.assign._torch_thread_budget).
    share = str(max(1, (os.cpu_count() or 1) // n))
    unset = [var for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS") if var not in os.environ]
    os.environ.update(dict.fromkeys(unset, share))
    try:
        mp.spawn(_worker, args=(n, store.port, args), nprocs=n)
    except mp.ProcessExitedException as err:
        # The worker printed its own error line; this one says which worker it was.
        raise ChildProcessError(f"process {err.error_index} of {n} exited with code "
                                f"{err.exit_code}") from None
    finally:
        for var in unset:
            del os.environ[var]


def _worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    """Rank ``rank`` of ``momos train --nproc``: torchrun's variables, then the command."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        # As for torchrun's workers: the store is the launcher's; no rank starts one.
        TORCHELASTIC_USE_AGENT_STORE="True")
    args.nproc = 1  # this process is one of them
    code = _dispatch(args)
    if code:
        sys.exit(code)


def _frontier(args: argparse.Namespace) -> None:
    from .frontier import best_within, frontier
    from .tables import format_table

    table = frontier(args.out, dataset=args.dataset, model=args.model, runs=args.runs,
                     seed=args.seeds or args.seed, epochs=args.epochs, quick=args.quick,
                     data_dir=args.data_dir, device=args.device, estimators=args.estimators,
                     resume=args.resume, plots=not args.no_plots, threads=args.threads,
                     progress="lines" if args.no_progress else None)
    print(format_table(table))
    pick = best_within(table)
    if pick is not None:
        print(f"fewest exact bits within 1 point of the baseline: {pick} "
              f"({table.loc[pick, 'bits_per_weight']:.3f} bits per weight)")
    print(f"wrote {args.out}/report.md, {args.out}/frontier.csv"
          + ("" if args.no_plots else f", {args.out}/frontier.png"))


def _experiment(args: argparse.Namespace) -> None:
    from .experiment import format_table, reproduce, sweep

    common = dict(out=args.out, model=args.model, dataset=args.dataset, epochs=args.epochs,
                  quick=args.quick, seed=args.seed, data_dir=args.data_dir,
                  device=args.device, estimators=args.estimators, resume=args.resume,
                  plots=not args.no_plots, threads=args.threads,
                  progress="lines" if args.no_progress else None)
    if args.command == "reproduce":
        if args.seeds:
            common["seed"] = args.seeds
        table = reproduce(**common)
    else:
        grid = {}
        if args.s:
            grid["s_values"] = args.s
        if args.capacity:
            grid["capacities"] = args.capacity
        table = sweep(**grid, method=args.method, baseline=not args.no_baseline, **common)
    print(format_table(table))
    figures = "" if args.no_plots else (
        " and figures" + (" (per seed, in seed<N>/)" if getattr(args, "seeds", None) else ""))
    print(f"wrote {args.out}/report.md, {args.out}/summary.csv{figures}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    return _dispatch(_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    """Run one parsed command; a user error is one line on stderr and status 1."""
    try:
        {"encode": _encode, "decode": _decode, "size": _size, "train": _train,
         "reproduce": _experiment, "sweep": _experiment,
         "frontier": _frontier}[args.command](args)
    except (OSError, ValueError, TypeError, ImportError) as err:
        print(f"momos: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
