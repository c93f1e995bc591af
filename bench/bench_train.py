"""Training throughput: threads, graph mode, precision, and the real loader vs a batch in memory.

    .venv/bin/python bench/bench_train.py [--model ResNet50_v2] [--size 224] [--batch 16] [--seconds 8]

Cases (one table, img/s and share of the FP32 conv peak measured in the same run):
- MXNet's default threads (child process without OMP_NUM_THREADS) vs the project's (every core);
- imperative vs `hybridize()` vs `hybridize(static_alloc=True, static_shape=True)` (the project's);
- FP32 vs BF16 AMP (child process: `amp.init` is process-wide); refused where the CPU cannot;
- oneDNN's AMX kernels on (the project's runtime, where the CPU has AMX) vs off (`FASHIONAI_AMX=0`),
  for FP32 and BF16;
- compute-bound (one batch in memory, repeated) vs the project's loader on 512 px demo JPEGs;
- BF16 against FP32 once more in `--pairs` interleaved pairs of children (`common.paired_ratios`),
  at `--batch` and at the training default's batch: the ratio the BF16 target is judged by, since
  single runs minutes apart drift by more than the effect.
A training image costs ~3x its forward FLOPs (forward, and backward for activations and weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TRAIN_FLOP_FACTOR = 3
# A child with oneDNN's default ISA: the opt-out, and the parent's own AMX setting not inherited
# (a DNNL_MAX_CPU_ISA in the environment counts as the user's and would win).
AMX_OFF = {"FASHIONAI_AMX": "0", "DNNL_MAX_CPU_ISA": None}


def _net(model: str, size: int, mode: str, dtype: str = "float32"):
    import mxnet as mx

    from fashionai.model import build_net
    from fashionai.training.fit import start_amp

    start_amp(dtype)
    net = build_net(model, 6, ctx=[mx.cpu()], hybridize=False)
    if mode == "hybridize":
        net.hybridize()
    elif mode == "static":
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def _trainer(net, dtype: str):
    import mxnet as mx

    from fashionai.training.loop import loss_scaling

    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "momentum": 0.9})
    if loss_scaling(dtype):
        from mxnet.contrib import amp

        amp.init_trainer(trainer)
    return trainer


def _step_fn(net, trainer, batches, dtype: str):
    """One SGD step per call on the next (data, label) of `batches`; returns the batch size."""
    import mxnet as mx
    from mxnet import autograd

    from fashionai.training.loop import amp_scaled, loss_scaling

    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()

    def step() -> int:
        data, label = next(batches)
        with autograd.record():
            loss = loss_fn(net(data), label)
            to_backward = amp_scaled([loss], trainer) if loss_scaling(dtype) else [loss]
        autograd.backward(to_backward)
        trainer.step(data.shape[0])
        loss.wait_to_read()
        return data.shape[0]
    return step


def _memory_batches(batch: int, size: int):
    import mxnet as mx

    data = mx.nd.random.uniform(shape=(batch, 3, size, size))
    label = mx.nd.array([i % 6 for i in range(batch)])
    while True:
        yield data, label


def _loader_batches(prepared: Path, batch: int, size: int, workers: int):
    """Endless batches of the project's training loader (augmentation included), at the view this
    bench has always timed (ImageNet's crop ratio)."""
    from fashionai.core.view import IMAGENET_CROP_RATIO, View
    from fashionai.data.loaders import image_folder, make_loader, split_dir
    from fashionai.data.transforms import train_transform

    dataset = image_folder(split_dir(prepared, "skirt_length_labels", "train"), 6)
    loader = make_loader(dataset, train_transform(View(size, IMAGENET_CROP_RATIO)), batch, train=True,
                         workers=workers)
    while True:
        yield from loader


def measure(model: str, size: int, batch: int, seconds: float, mode: str = "static", dtype: str = "float32",
            loader: Path | None = None, workers: int = 0) -> float:
    """img/s of training `model` in one setting."""
    import mxnet as mx

    from fashionai.training.fit import check_dtype

    check_dtype(dtype, [mx.cpu()])
    net = _net(model, size, mode, dtype)
    batches = _loader_batches(loader, batch, size, workers) if loader else _memory_batches(batch, size)
    return common.rate(_step_fn(net, _trainer(net, dtype), batches, dtype), seconds)


def child(args: argparse.Namespace) -> None:
    """One case in a fresh process: prints {"img_per_s": ..} or {"error": ..}."""
    from fashionai.core.runtime import configure_amx, configure_runtime, configure_spin

    if args.case == "default-threads":  # OMP_NUM_THREADS removed by the parent: MXNet picks its own default
        configure_spin(), configure_amx()
    else:
        configure_runtime()  # FASHIONAI_AMX=0 from the parent turns AMX off
    try:
        value = measure(args.model, args.size, args.batch, args.seconds,
                        dtype="bfloat16" if args.case.startswith("bf16") else "float32")
        print(json.dumps({"img_per_s": value}))
    except ValueError as err:
        print(json.dumps({"error": str(err)}))


def _bf16_pairs(script: Path, args: argparse.Namespace) -> list[str]:
    """BF16 AMP / FP32 training img/s in interleaved pairs of children, at `--batch` and at the
    training default's batch."""
    from fashionai.training.config import TrainConfig

    notes = []
    for batch in sorted({args.batch, TrainConfig.batch_size}):
        child_args = ["--model", args.model, "--size", str(args.size), "--batch", str(batch),
                      "--seconds", str(args.seconds)]

        def rate(case: str, child_args=child_args):
            return lambda: common.run_child(script, [*child_args, "--case", case], {})["img_per_s"]

        ratios = common.paired_ratios(rate("fp32"), rate("bf16"), args.pairs)
        notes.append(f"BF16 AMP / FP32 at batch {batch}, interleaved: {common.describe_ratios(ratios)}")
    return notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ResNet50_v2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per case (after one warm-up step)")
    p.add_argument("--workdir", default="bench/.work", help="demo JPEGs for the loader case")
    p.add_argument("--pairs", type=int, default=3, help="interleaved BF16/FP32 pairs per batch size (0: none)")
    p.add_argument("--json", help="append the result to this JSON lines file")
    common.add_child_flags(p)
    args = p.parse_args()
    if args.child:
        return child(args)

    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    import mxnet as mx

    from fashionai.model import build_net

    info = common.machine_info()
    peak = common.peak_conv_gflops()
    gflop = TRAIN_FLOP_FACTOR * common.forward_gflop(build_net(args.model, 6, ctx=[mx.cpu()]), args.size)
    prepared = common.demo_images(Path(args.workdir), per_class=12, size=512)
    script, child_args = Path(__file__), ["--model", args.model, "--size", str(args.size), "--batch",
                                          str(args.batch), "--seconds", str(args.seconds)]
    rows, notes = [], []

    def add(case: str, value: float | None, baseline: str | None = None, note: str = "") -> None:
        row = {"case": case, "img/s": value}
        if value:
            row["share of peak"] = value * gflop / peak
        base = next((r["img/s"] for r in rows if r["case"] == baseline), None)
        if value and base:
            row["vs"] = f"{value / base:.2f}x {baseline}"
        rows.append(row)
        if note:
            notes.append(f"{case}: {note}")

    kw = dict(model=args.model, size=args.size, batch=args.batch, seconds=args.seconds)
    default = common.run_child(script, [*child_args, "--case", "default-threads"], {"OMP_NUM_THREADS": None})
    add("MXNet default threads (static graph)", default["img_per_s"])
    add("project threads (static graph)", measure(**kw), "MXNet default threads (static graph)")
    add("imperative", measure(**kw, mode="imperative"))
    add("hybridize()", measure(**kw, mode="hybridize"), "imperative")
    add("hybridize(static_alloc, static_shape)", measure(**kw), "imperative")
    off = common.run_child(script, [*child_args, "--case", "fp32"], AMX_OFF)
    add("FP32, AMX off", off.get("img_per_s"), "hybridize(static_alloc, static_shape)")
    bf16_off = common.run_child(script, [*child_args, "--case", "bf16"], AMX_OFF)
    add("BF16 AMP, AMX off", bf16_off.get("img_per_s"), "FP32, AMX off", bf16_off.get("error", ""))
    bf16 = common.run_child(script, [*child_args, "--case", "bf16"], {})
    add("BF16 AMP (AMX where the CPU has it)", bf16.get("img_per_s"), "hybridize(static_alloc, static_shape)",
        bf16.get("error", ""))
    if bf16.get("img_per_s") and bf16_off.get("img_per_s"):
        notes.append(f"BF16 AMP, AMX on vs off: {bf16['img_per_s'] / bf16_off['img_per_s']:.2f}x")
    if bf16.get("img_per_s") and args.pairs:
        notes += _bf16_pairs(script, args)
    add("compute-bound: one batch in memory", measure(**kw))
    add("project loader (512 px JPEGs, augmentation), workers 0", measure(**kw, loader=prepared),
        "compute-bound: one batch in memory")
    notes.append(f"peak FP32 conv {peak:.0f} GFLOPS; {args.model} training = {gflop:.1f} GFLOP per image "
                 f"({TRAIN_FLOP_FACTOR}x forward); peak RSS {common.peak_rss_mb():.0f} MiB (children "
                 f"{common.peak_rss_mb(children=True):.0f} MiB)")
    common.report(f"Training: {args.model} at {args.size} px, batch {args.batch}", info,
                  {"batch": args.batch, "seconds per case": args.seconds}, rows,
                  ["case", "img/s", "share of peak", "vs"], notes, args.json)


if __name__ == "__main__":
    main()
