"""Fast head training from cached backbone features (Inception retrain.py's "bottleneck" cache).

With `--freeze-backbone --cache-features` the frozen backbone runs once per image (once per view
of `--cache-views`), its pooled features are cached on disk, and the training epochs fit only the
new `Dense(K)` head on them: an epoch is a few small matrix products instead of a pass of the
whole network, so a CPU user gets a decent head in seconds. `--fine-tune-epochs N` then unfreezes
the backbone for N epochs of ordinary training (fastai's two-stage `fine_tune`).

Features are taken at the head's input in the inference graph (BatchNorm on its running
statistics), exactly what the head sees at prediction time, by MXNet or, with `--feature-engine`,
OpenVINO (fashionai.training.backbone_pass). The cache is one `.npz` file per
(model, input size, crop ratio, backbone weights, views, precision, engine) under
`<prepared>/feature_cache/`, holding one (views, C) float32 block per image keyed by the SHA-1 of
the image file's bytes: renamed, moved or re-split images hit the cache, edited ones are recomputed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from fashionai.core.cpu import usable_cores
from fashionai.core.io import atomic_save, sha1_of
from fashionai.core.view import View
from fashionai.data.loaders import image_folder, split_dir
from fashionai.data.tta import ImageDecodeError, decode_loader, num_views
from fashionai.model import head_attr
from fashionai.training.backbone_pass import BackbonePass
from fashionai.training.config import TrainConfig
from fashionai.training.loop import loss_scaling, sample_weights, soft_targets, softmax_loss, step, val_metrics

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

CACHE_DIR = "feature_cache"
EXTRACT_BATCH = 32  # images per backbone pass while filling the cache


def image_key(path: str | Path) -> str:
    """SHA-1 of the file's bytes: the cache key of an image, independent of its name or folder."""
    return sha1_of(path)


def weights_id(pretrained: str, seed: int) -> str:
    """A name for the backbone weights features depend on: the params file's SHA-1 prefix, or the
    seed of a random initialisation (`pretrained="none"`: useful for tests, not for results)."""
    if pretrained == "none":
        return f"random-seed{seed}"
    if pretrained == "cache":
        return "modelstore"  # model-store files are themselves named and checked by SHA-1
    return "file-" + image_key(pretrained)[:10]


def cache_file(prepared: str | Path, model: str, view: View, weights: str, views: str, dtype: str = "float32",
               engine: str = "mxnet") -> Path:
    """`<prepared>/feature_cache/<model>-<S>px-r<crop ratio>-<weights>-<views>[-<dtype>][-<engine>].npz`:
    features a BF16 graph computed differ from FP32's in the third digit, and OpenVINO's from
    MXNet's in the sixth, so each precision and engine keeps its own file (MXNet FP32's name has
    no suffix, as before there was a choice)."""
    suffix = ("" if dtype == "float32" else f"-{dtype}") + ("" if engine == "mxnet" else f"-{engine}")
    name = f"{model.lower()}-{view.size}px-r{view.crop_ratio:g}-{weights}-{views}{suffix}.npz"
    return Path(prepared) / CACHE_DIR / name


def load_cache(path: Path) -> dict[str, np.ndarray]:
    """{image key: (views, C) features} of a cache file ({} when there is none yet)."""
    if not path.is_file():
        return {}
    with np.load(path) as saved:
        return dict(zip(saved["keys"].tolist(), saved["features"]))


def save_cache(path: Path, cache: dict[str, np.ndarray]) -> None:
    """Write the cache through a temporary file and a rename (a crash never leaves half a cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(cache)
    features = np.stack([cache[k] for k in keys]).astype(np.float32)
    atomic_save(path, lambda tmp: np.savez(tmp, keys=np.array(keys), features=features))


def _batches(paths: Sequence[Path], view: View, views: str, threads: int = 0):
    """(B x V, 3, S, S) NDArrays of `paths`' views, EXTRACT_BATCH images at a time, decoded by
    `threads` threads ahead; ImageDecodeError names every image of a batch that does not decode."""
    import mxnet as mx

    for items in decode_loader(paths, [view.short], view, views, EXTRACT_BATCH, threads):
        failures = [x for kind, x in items if kind == "bad"]
        if failures:
            raise ImageDecodeError(failures)
        yield mx.nd.concat(*[x for kind, x in items if kind == "ok"], dim=0)


def _extract(backbone: BackbonePass, paths: Sequence[Path], view: View, views: str) -> np.ndarray:
    """(N, V, C) features of `paths`, each image's V views taken like prediction's TTA views."""
    out, v = [], num_views(views)
    threads = usable_cores() if len(paths) > EXTRACT_BATCH else 0  # decode the next batch while this one runs
    for x in tqdm(_batches(paths, view, views, threads), desc=f"features ({views})", unit="batch", leave=False,
                  disable=None, total=-(-len(paths) // EXTRACT_BATCH)):
        features = backbone(x)
        out.append(features.reshape(-1, v, features.shape[-1]))
    return np.concatenate(out)


def _missing(path: Path, keys: Sequence[str], paths: Sequence[Path]) -> tuple[dict, list[tuple[str, Path]]]:
    """(the cache file's features, the (key, path) pairs it lacks, in key order)."""
    cache = load_cache(path)
    return cache, sorted({k: p for k, p in zip(keys, paths) if k not in cache}.items())


def _settle(backbone: BackbonePass, todo: Sequence[tuple[str, Path]], keys: Sequence[str], paths: Sequence[Path],
            path_of: Callable[[str], Path], view: View, views: str) -> None:
    """Decide a pending OpenVINO pass before it computes anything: auto keeps MXNet where MXNet's
    file holds every image already (no export, no check); else OpenVINO is checked on the first
    batch to compute."""
    if backbone.wanted == "auto" and not _missing(path_of("mxnet"), keys, paths)[1]:
        backbone.keep_mxnet(f"every image's MXNet features are cached in {path_of('mxnet')}")
    else:
        backbone.check(next(_batches([p for _, p in todo[:EXTRACT_BATCH]], view, views)))


def cached_features(backbone: BackbonePass, paths: Sequence[Path], path_of: Callable[[str], Path], view: View,
                    views: str) -> np.ndarray:
    """(N, V, C) features of `paths` at `view`: read from the cache file of the engine the features
    come from (`path_of(engine)`), the missing ones computed and added. A pending OpenVINO pass is
    decided first (`_settle`), and where it falls back, MXNet's file is the one read and filled."""
    keys = [image_key(p) for p in paths]
    path = path_of(backbone.engine)
    cache, todo = _missing(path, keys, paths)
    if todo and backbone.pending:
        _settle(backbone, todo, keys, paths, path_of, view, views)
        if path != path_of(backbone.engine):
            path = path_of(backbone.engine)
            cache, todo = _missing(path, keys, paths)
    if todo:
        fresh = _extract(backbone, [p for _, p in todo], view, views)
        cache.update({k: f for (k, _), f in zip(todo, fresh)})
        save_cache(path, cache)
    log.info("features of %d images (%d from the cache %s, %d computed)", len(paths),
             len(paths) - len(todo), path, len(todo))
    return np.stack([cache[k] for k in keys])


# --- freezing -----------------------------------------------------------------------------------
def freeze_backbone(net: mx.gluon.HybridBlock) -> dict[str, str]:
    """Stop gradients to every parameter but the head's; returns the previous grad_req by name
    (BatchNorm running statistics are 'null' already and must stay so after `unfreeze`)."""
    head = set(getattr(net, head_attr(net)).collect_params())
    before = {}
    for name, param in net.collect_params().items():
        before[name] = param.grad_req
        if name not in head:
            param.grad_req = "null"
    return before


def unfreeze(net: mx.gluon.HybridBlock, before: dict[str, str]) -> None:
    """Restore the grad_req `freeze_backbone` recorded."""
    for name, param in net.collect_params().items():
        param.grad_req = before.get(name, param.grad_req)


# --- head stage ---------------------------------------------------------------------------------
class HeadStage:
    """Epochs of head-only training on cached features (a `fashionai.training.stages.EpochStage`);
    the head is the net's own, so the run's params files stay complete nets that predict / evaluate
    / submit load as usual. `val_strings`: the val images' full label strings (the official AP);
    `class_weights`: per-class loss weights (--balance weights) or None."""

    def __init__(self, net, config: TrainConfig, ctx: Sequence, train_paths: Sequence[Path],
                 train_labels: np.ndarray, val_paths: Sequence[Path], val_labels: np.ndarray, *,
                 val_strings: Sequence[str], class_weights: np.ndarray | None = None):
        import mxnet as mx

        self.net, self.config, self.ctx = net, config, list(ctx)
        self.head = getattr(net, head_attr(net))
        for c in self.ctx:  # finish deferred initialisation (random weights): the trainer reads every parameter
            net(mx.nd.zeros((1, 3, config.data_shape, config.data_shape), ctx=c))
        backbone = BackbonePass(net, config.feature_engine, config.dtype, ctx, config.data_shape)
        weights = weights_id(config.pretrained, config.seed)
        view = config.view

        def features(paths: Sequence[Path], views: str) -> np.ndarray:
            path_of = functools.partial(cache_file, config.prepared, config.model, view, weights, views, config.dtype)
            return cached_features(backbone, paths, path_of, view, views)

        train, engine = features(train_paths, config.cache_views), backbone.engine
        val = features(val_paths, "none")
        if backbone.engine != engine:  # OpenVINO failed its check only at the val images: one engine for both
            train = features(train_paths, config.cache_views)
        # every view is a training sample of its image's class
        self.x = train.reshape(-1, train.shape[-1])
        self.y = np.repeat(np.asarray(train_labels, dtype=np.int64), train.shape[1])
        self.val_x, self.val_y = val[:, 0], np.asarray(val_labels, dtype=np.int64)
        self.step = config.batch_size * len(self.ctx)
        self.val_strings, self.class_weights = list(val_strings), class_weights

    @property
    def iters_per_epoch(self) -> int:
        return max(1, len(self.x) // self.step)

    def train_epoch(self, trainer, epoch: int) -> dict[str, float]:
        """One shuffled pass over the cached training features (the loss step of full training)."""
        import mxnet as mx

        order, loss_fn = np.random.permutation(len(self.x)), softmax_loss()
        total, correct, seen, start = 0.0, 0, 0, time.time()
        for i in range(self.iters_per_epoch):
            idx = order[i * self.step:(i + 1) * self.step]
            targets = soft_targets(mx.nd.array(self.y[idx]), self.config.num_classes, self.config.label_smoothing)
            xs, ts = (mx.gluon.utils.split_and_load(a, self.ctx) for a in (mx.nd.array(self.x[idx]), targets))
            weights = sample_weights(self.class_weights, self.y[idx], self.ctx)
            loss, outputs = step(self.head, loss_fn, xs, ts, weights, trainer, len(idx),
                                 scale_loss=loss_scaling(self.config.dtype))
            total += loss
            # float32 whatever the head computes in: numpy cannot order BF16 AMP's bfloat16 logits
            logits = np.concatenate([mx.nd.amp_cast(o, dtype="float32").asnumpy() for o in outputs])
            correct += int((logits.argmax(1) == self.y[idx]).sum())
            seen += len(idx)
        return {"train_loss": total / max(seen, 1), "train_acc": correct / max(seen, 1),
                "img_per_s": seen / max(time.time() - start, 1e-9)}

    def val_probs(self) -> np.ndarray:
        """(N, K) softmax of the head on the val images' cached eval-view features."""
        import mxnet as mx

        x = mx.nd.array(self.val_x, ctx=self.ctx[0])
        return mx.nd.softmax(self.head(x), axis=-1).asnumpy()

    def validate(self) -> dict[str, float]:
        """The val figures of the head on the val images' cached features."""
        return val_metrics(self.val_probs(), self.val_y, self.val_strings)


def head_stage(net, config: TrainConfig, ctx: Sequence, val_strings: Sequence[str],
               class_weights: np.ndarray | None = None) -> HeadStage | None:
    """The cached-feature head stage of `--cache-features`, or None."""
    if not config.cache_features:
        return None
    prepared = Path(config.prepared)
    train = image_folder(split_dir(prepared, config.task, "train"), config.num_classes).items
    val = image_folder(split_dir(prepared, config.task, "val"), config.num_classes).items
    return HeadStage(net, config, ctx, [Path(p) for p, _ in train], np.array([y for _, y in train]),
                     [Path(p) for p, _ in val], np.array([y for _, y in val]), val_strings=val_strings,
                     class_weights=class_weights)
