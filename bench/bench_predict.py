"""Ten-crop prediction: a tutorial-style FP32 loop vs the project's predict at each precision.

    .venv/bin/python bench/bench_predict.py [--model ResNet50_v2] [--size 224] [--images 48] [--pairs 5]

Speed (one table): every case predicts the same `--images` 512 px demo JPEGs with ten-crop TTA
(10 views per image) in its own child process, so each has its own peak resident memory:
- tutorial-style: one image at a time, decoded, resized and cut into ten crops in Python with
  NDArray slicing, the 10 views run as one batch through `net.hybridize()` (the Gluon FashionAI
  tutorial's predict loop);
- the project (`fashionai.inference.predict.predict_paths`, batches of several images' views) at fp32,
  fused, int8 and bf16 (`fashionai.inference.nets`; refused where this CPU cannot run it), on the
  OpenVINO engine at fp32, bf16 and int8 (`fashionai.inference.openvino_net`), and at fp32
  once more with MXNet's default threads (`OMP_NUM_THREADS` unset, the project's thread setting
  skipped), the baseline of the project's thread default.
The net is one epoch of `--model` from random weights at a small LR (speed does not depend on the
weights; a large LR would collapse its outputs to one class and hide any disagreement).

Accuracy (second table): `pipeline.precision.compare_precisions` on a run of the same `--model` that learned
the skirt-length task with the demo preset's budget at 64 px (or on `--run`, any trained run), val
mAP of each precision beside fp32's, the precision `auto` picks there, and that precision's
ten-crop speed against the tutorial's loop: from the first table, and as the median of `--pairs`
interleaved pairs of children (`common.paired_ratios`), which is what the 3x target is judged by.

Whole commands (third table): `fashionai submit --tta ten-crop` over
the same question images, as whole processes (start-up, loading, export / calibration caches warm,
prediction, writing), against the tutorial's loop as a whole process, in `--pairs` interleaved
pairs per case: MXNet fp32, MXNet `auto` (today's default before the engine choice), each OpenVINO
precision, and the default (`--engine auto --precision auto`, after `evaluate --compare-precision`
has recorded the choice and this machine's costs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TASK = "skirt_length_labels"
DEFAULT_THREADS = "fp32, MXNet default threads"  # OMP_NUM_THREADS removed, configure_threads not run
VIEWS = 10
AMX_OFF = ", AMX off"  # case suffix: the child runs with FASHIONAI_AMX=0
OV = "openvino-"  # case prefix: the OpenVINO engine at the precision that follows
CASES = ("tutorial", "fp32", "fused", "int8", "bf16", f"{OV}fp32", f"{OV}bf16", f"{OV}int8", f"int8{AMX_OFF}",
         f"bf16{AMX_OFF}", DEFAULT_THREADS)


def _run(prepared: Path, out: Path, name: str, **changes) -> Path:
    """A run directory of the demo preset with `changes`, trained once and reused."""
    from fashionai.training.config import TrainConfig
    from fashionai.training.fit import fit

    run = out / TASK / name
    if (run / "best.params").is_file():
        return run
    return fit(TrainConfig.demo(TASK, prepared, out, name=name, **changes))


def _images(prepared: Path, count: int) -> list[Path]:
    images = sorted((prepared / TASK).glob("*/*/*.jpg"))
    return (images * (count // max(len(images), 1) + 1))[:count]


def tutorial_view(size: int):
    """The tutorial's view at `size` px: ImageNet's crop ratio (resize 256, crop 224). Both the
    tutorial's loop and the project's predict are timed on it, so they cut the same crops."""
    from fashionai.core.view import IMAGENET_CROP_RATIO, View

    return View(size, IMAGENET_CROP_RATIO)


def tutorial_predict(net, paths, view):
    """The tutorial's loop: per image, decode, resize the short side, normalise, ten crops by slicing
    (corners, centre, and their mirrors), one forward of the 10 views, softmax averaged."""
    import mxnet as mx
    import numpy as np

    size = view.size
    mean, std = mx.nd.array(view.mean).reshape((3, 1, 1)), mx.nd.array(view.std).reshape((3, 1, 1))
    out = []
    for path in paths:
        img = mx.image.imread(str(path))
        img = mx.image.resize_short(img, view.short).astype("float32") / 255
        img = (mx.nd.transpose(img, (2, 0, 1)) - mean) / std
        h, w = img.shape[1:]
        corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2)]
        crops = [img[:, y:y + size, x:x + size] for y, x in corners]
        crops += [mx.nd.flip(c, axis=2) for c in crops]
        probs = mx.nd.softmax(net(mx.nd.stack(*crops)), axis=-1).mean(axis=0)
        out.append(probs.asnumpy())
    return np.stack(out)


def _probs_file(workdir: str, case: str) -> Path:
    """Where a case's child leaves its probabilities for the parent's agreement column."""
    return Path(workdir) / f"probs-{''.join(c if c.isalnum() else '-' for c in case)}.npy"


def child(args: argparse.Namespace) -> None:
    """One case in a fresh process: {"img_per_s", "rss_mb"} (probabilities saved beside), or {"error"}."""
    from fashionai.core.runtime import configure_amx, configure_runtime, configure_spin

    if args.case == DEFAULT_THREADS:
        configure_spin(), configure_amx()
    else:
        configure_runtime()  # FASHIONAI_AMX=0 from the parent for the AMX-off cases
    import mxnet as mx
    import numpy as np

    from fashionai.inference.nets import load_net
    from fashionai.inference.predict import predict_paths
    from fashionai.model import load_run

    run, images, ctx = Path(args.run), _images(Path(args.prepared), args.images), [mx.cpu()]
    view = tutorial_view(args.size)
    try:
        if args.case == "tutorial":
            net, _ = load_run(run, ctx=ctx)
            net.hybridize()
            predict = lambda paths: tutorial_predict(net, paths, view)  # noqa: E731
        else:
            precision = "fp32" if args.case == DEFAULT_THREADS else args.case.removesuffix(AMX_OFF)
            engine = "openvino" if precision.startswith(OV) else "mxnet"
            net, _ = load_net(run, precision.removeprefix(OV), ctx=ctx, engine=engine)
            predict = lambda paths: predict_paths(net, paths, view=view, ctx=ctx,  # noqa: E731
                                                  tta="ten-crop", batch_size=args.batch)
    except (ValueError, OSError) as err:
        print(json.dumps({"error": str(err).strip().splitlines()[-1][:200]}))
        return
    predict(images[:max(1, args.batch // VIEWS)])  # warm-up: graph build, int8 calibration is done above
    start = time.time()
    probs = predict(images)
    seconds = time.time() - start
    np.save(_probs_file(args.workdir, args.case), probs)
    print(json.dumps({"img_per_s": len(images) / seconds, "rss_mb": common.peak_rss_mb()}))


def _case(args, script: Path, prepared: Path, run: Path, case: str) -> dict:
    """One speed case's child: {"img_per_s", "rss_mb"} or {"error"}."""
    return common.run_child(script, ["--case", case, "--run", str(run), "--prepared", str(prepared),
                                     "--images", str(args.images), "--size", str(args.size),
                                     "--batch", str(args.batch), "--workdir", args.workdir],
                            {"OMP_NUM_THREADS": None} if case == DEFAULT_THREADS else
                            {"FASHIONAI_AMX": "0", "DNNL_MAX_CPU_ISA": None} if case.endswith(AMX_OFF) else {})


def _speed_rows(args, script: Path, prepared: Path, run: Path, gflop: float, peak: float) -> list[dict]:
    import numpy as np

    rows = []
    for case in CASES:
        result = _case(args, script, prepared, run, case)
        row = {"case": "tutorial-style loop, FP32" if case == "tutorial" else f"project, {case}"}
        if "error" in result:
            row["note"] = f"not run: {result['error']}"
        else:
            value = result["img_per_s"]
            row.update({"img/s": value, "views/s": value * VIEWS, "share of peak": value * gflop / peak,
                        "peak RSS MiB": result["rss_mb"]})
            base = rows[0].get("img/s") if rows else None
            if base:
                row["vs tutorial"] = f"{value / base:.2f}x"
                ref = np.load(_probs_file(args.workdir, "tutorial"))
                probs = np.load(_probs_file(args.workdir, case))
                row["note"] = (f"argmax agreement {np.mean(probs.argmax(1) == ref.argmax(1)):.3f}, "
                               f"max |dp| {np.abs(probs - ref).max():.1e}")
        rows.append(row)
    by_case = dict(zip(CASES, rows))
    fp32, default = by_case["fp32"], by_case[DEFAULT_THREADS]
    if fp32.get("img/s") and default.get("img/s"):
        fp32["note"] = "; ".join(filter(None, [fp32.get("note"),
                                              f"{fp32['img/s'] / default['img/s']:.2f}x MXNet default threads"]))
    return rows


def _accuracy_rows(run: Path, batch: int) -> tuple[list[dict], str, str]:
    from fashionai.pipeline.precision import candidates, compare_precisions, pick_precision

    rows = compare_precisions(run, devices="cpu", batch_size=batch, choices=candidates("auto", "auto"))
    choice, why = pick_precision(rows)
    table = [{"engine": r["engine"], "precision": r["precision"], "val mAP": r.get("val_map"), "delta mAP": r.get("delta_map"),
              "img/s (no TTA)": r.get("img_s"), "speed-up": r.get("speedup"),
              "argmax agreement": r.get("argmax_agreement"),
              "note": "" if r["supported"] else r["reason"][:120]} for r in rows]
    return table, choice, f"auto picks {choice} on {run}: {why}"


SUBMITS = {  # whole-command cases: the flags of `fashionai submit` after the common ones
    "MXNet fp32": ["--engine", "mxnet", "--precision", "fp32"],
    "MXNet auto (the default before the engine choice)": ["--engine", "mxnet", "--precision", "auto"],
    "OpenVINO fp32": ["--engine", "openvino", "--precision", "fp32"],
    "OpenVINO bf16": ["--engine", "openvino", "--precision", "bf16"],
    "OpenVINO int8": ["--engine", "openvino", "--precision", "int8"],
    "default (--engine auto --precision auto)": [],
}


def _questions(prepared: Path, work: Path, count: int) -> tuple[Path, Path]:
    """A question file of `count` of the prepared images (copied under `<work>/questions/Images/`)."""
    import shutil

    root = work / "questions"
    folder = root / "Images" / TASK
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, image in enumerate(_images(prepared, count)):
        shutil.copyfile(image, folder / f"q{i:04d}.jpg")
        lines.append(f"Images/{TASK}/q{i:04d}.jpg,{TASK},?")
    (root / "question.csv").write_text("\n".join(lines) + "\n")
    return root / "question.csv", root


def _whole(command: list[str], env: dict) -> float:
    """Wall seconds of a whole process (nan when it fails)."""
    import subprocess

    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"<!-- {' '.join(command[:4])} failed: {done.stderr.strip().splitlines()[-1:]} -->", file=sys.stderr)
        return float("nan")
    return time.perf_counter() - start


def _submit_rows(args, script: Path, prepared: Path, run: Path) -> tuple[list[dict], list[str]]:
    """Whole `fashionai submit --tta ten-crop` per case against the tutorial's loop as a whole process,
    in interleaved pairs (the caches of each case filled by one untimed run first)."""
    import os

    import numpy as np

    work = Path(args.workdir)
    questions, root = _questions(prepared, work, args.images)
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "FASHIONAI_CACHE": str(work / "cache")}
    tutorial = [sys.executable, str(script), "--child", "--case", "tutorial", "--run", str(run), "--prepared",
                str(prepared), "--images", str(args.images), "--size", str(args.size), "--workdir", args.workdir]
    base = [sys.executable, "-m", "fashionai", "submit", "--runs", str(run), "--questions", str(questions),
            "--images-root", str(root), "--tta", "ten-crop", "--which", "best", "-b", str(args.batch), "--overwrite"]
    first = {"evaluate --compare-precision": _whole([sys.executable, "-m", "fashionai", "evaluate", "--run", str(run),
                                                     "--compare-precision", "-b", str(args.batch)], env)}
    rows = []
    for name, flags in SUBMITS.items():
        command = [*base, "--out", str(work / "submission" / name.split()[0].lower()), *flags]
        first[name] = _whole(command, env)  # untimed: the export, calibration and choice caches are filled
        ratios = common.paired_ratios(lambda: 1 / _whole(tutorial, env), lambda: 1 / _whole(command, env), args.pairs)
        good = [r for r in ratios if r == r]
        rows.append({"case": name, "vs tutorial (median)": f"{np.median(good):.2f}x" if good else "failed",
                     "pairs": ", ".join(f"{r:.2f}" for r in good), "first run s": first[name]})
    notes = [f"{args.images} question images x 10 views, whole processes (start-up included); ratio = the tutorial "
             f"loop's wall time / the command's, median of {args.pairs} interleaved pairs per case",
             f"first runs (caches cold) in seconds: {', '.join(f'{k} {v:.1f}' for k, v in first.items())}",
             _auto_says(run)]
    return rows, notes


def _auto_says(run: Path) -> str:
    """What the default chose for `run` (its precision.json)."""
    try:
        saved = json.loads((run / "precision.json").read_text())
    except (OSError, ValueError):
        return "auto's choice: not recorded"
    return f"the default runs {saved.get('engine', 'mxnet')} {saved['precision']} here: {saved['reason']}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ResNet50_v2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=48, help="images per speed case (each 10 views)")
    p.add_argument("--batch", type=int, default=30, help="views per forward pass of the project's predict")
    p.add_argument("--pairs", type=int, default=5,
                   help="interleaved pairs of the tutorial's loop and auto's precision, ten-crop (0: none)")
    p.add_argument("--run", help="a trained run for the accuracy table (default: a demo run trained here)")
    p.add_argument("--workdir", default="bench/.work")
    p.add_argument("--json", help="append the results to this JSON lines file")
    common.add_child_flags(p)
    p.add_argument("--prepared", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    import mxnet as mx

    from fashionai.model import build_net

    info = common.machine_info()
    peak = common.peak_conv_gflops()
    gflop = VIEWS * common.forward_gflop(build_net(args.model, 6, ctx=[mx.cpu()]), args.size)
    work = Path(args.workdir)
    prepared = common.demo_images(work, per_class=12, size=512)
    speed_run = _run(prepared, work / "runs-predict", f"{args.model}-{args.size}-1epoch", model=args.model,
                     data_shape=args.size, epochs=1, batch_size=8, lr=1e-3, warmup_epochs=0)
    script = Path(__file__)
    rows = _speed_rows(args, script, prepared, speed_run, gflop, peak)
    notes = [f"{args.images} images x {VIEWS} views; {args.model} forward = {gflop / VIEWS:.2f} GFLOP per view; "
             f"peak FP32 conv {peak:.0f} GFLOPS (share of peak: of the FP32 peak, also for int8)",
             "agreement and |dp| against the tutorial loop's probabilities: both cut the ten crops from the "
             "whole resized image; where its width leaves an odd margin the tutorial's mirrored views sit one "
             "pixel off (fashionai.data.tta), so even fp32 may differ slightly on a near-random net"]
    common.report(f"Ten-crop prediction: {args.model} at {args.size} px", info,
                  {"views per project batch": args.batch}, rows,
                  ["case", "img/s", "views/s", "share of peak", "vs tutorial", "peak RSS MiB", "note"], notes,
                  args.json)

    # The accuracy run is the same model, trained (the speed run's weights are near random): the demo
    # preset's budget at 64 px, ~4 minutes on 2 cores the first time, then reused.
    quality_run = Path(args.run) if args.run else _run(common.demo_images(work, per_class=80, size=128),
                                                        work / "runs-predict", f"{args.model}-64", model=args.model)
    table, choice, why = _accuracy_rows(quality_run, args.batch)
    chosen = next((r for r in rows if r["case"] == f"project, {choice}"), {})
    notes = [why, f"ten-crop at auto ({choice}): {chosen.get('vs tutorial', 'not measured')} the tutorial's FP32 loop "
                  "(speed table above)"]
    if args.pairs and chosen.get("img/s"):
        ratios = common.paired_ratios(lambda: _case(args, script, prepared, speed_run, "tutorial")["img_per_s"],
                                      lambda: _case(args, script, prepared, speed_run, choice)["img_per_s"],
                                      args.pairs)
        notes.append(f"ten-crop at auto ({choice}) / the tutorial's FP32 loop, interleaved: "
                     f"{common.describe_ratios(ratios)}")
    if args.pairs:
        submit_rows, submit_notes = _submit_rows(args, script, prepared, speed_run)
        common.report(f"Whole submit commands, ten-crop: {args.model} at {args.size} px", info,
                      {"views per batch": args.batch}, submit_rows,
                      ["case", "vs tutorial (median)", "pairs", "first run s"], submit_notes, args.json)
    common.report("Prediction precision: val mAP against FP32 (TTA none)", info,
                  {"run": str(quality_run), "tolerance": 0.005}, table,
                  ["engine", "precision", "val mAP", "delta mAP", "img/s (no TTA)", "speed-up", "argmax agreement",
                   "note"],
                  notes, args.json)


if __name__ == "__main__":
    main()
