"""Model factory: a GluonCV model-zoo backbone with a new `Dense(K)` head, its weights, hybridized.

Pretrained weights never come silently from nowhere: `pretrained="cache"` looks up the model
store's file `<root or $MXNET_HOME or ~/.mxnet>/models/<name>-<sha1[:8]>.params` (the name and
SHA-1 GluonCV records) and fails with the exact file name and folder when it is missing; a
download happens only with `download=True`. `pretrained=PATH` loads a given params file (the
backbone; its old head is ignored); `pretrained="none"` initialises everything at random.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashionai.core.devices import context_list
from fashionai.core.runinfo import RunInfo

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

HEAD_ATTRS = ("output", "fc")  # model-zoo nets name their classifier `output` (resnet_v2) or `fc` (v1b)
SHOWN_KEYS = 5


def model_dir(root: str | Path | None = None) -> Path:
    """Folder of cached model-zoo weights: `<root or $MXNET_HOME or ~/.mxnet>/models`.

    Read here, at call time, rather than from `mxnet.base.data_dir()`, which MXNet froze at import.
    """
    home = root or os.environ.get("MXNET_HOME") or os.path.join("~", ".mxnet")
    return Path(home).expanduser() / "models"


def weights_file_name(model_name: str) -> str:
    """`<name>-<sha1[:8]>.params`, the file name GluonCV's model store uses for `model_name`."""
    from gluoncv.model_zoo import model_store

    name = model_name.lower()
    if name not in model_store.pretrained_model_list():
        raise ValueError(f"the GluonCV model store has no pretrained weights for {model_name!r}; "
                         "pass --pretrained-path FILE or --pretrained none")
    return f"{name}-{model_store.short_hash(name)}.params"


def cached_weights(model_name: str, root: str | Path | None = None, download: bool = False) -> Path:
    """Path of the model store's ImageNet weights for `model_name`, downloaded only if `download`.

    FileNotFoundError names the exact file and folder; a file whose SHA-1 does not match the
    store's record is refused (ValueError) rather than used or silently replaced.
    """
    from gluoncv.model_zoo import model_store
    from gluoncv.utils import check_sha1

    file_name = weights_file_name(model_name)
    folder = model_dir(root)
    path = folder / file_name
    if download:
        # gluoncv verifies the SHA-1 and (re)downloads; it prefers $MXNET_HOME over `root` if set.
        return Path(model_store.get_model_file(model_name.lower(), root=str(folder)))
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {model_name} not found: put the file {file_name} in the folder "
            f"{folder} (copy it from a machine where GluonCV downloaded it, or set MXNET_HOME / "
            "--mxnet-home to a folder whose models/ holds it), or pass --pretrained-path FILE, "
            "or add --download to fetch it from the model zoo, or use --pretrained none to train "
            "from scratch")
    if not check_sha1(str(path), model_store._model_sha1[model_name.lower()]):
        raise ValueError(f"{path}: content does not match the model store's SHA-1 (truncated or another "
                         "file?); replace it, or pass --download to fetch it again")
    return path


def head_attr(net: mx.gluon.Block) -> str:
    """Name of the classifier attribute (`output` or `fc`) of a model-zoo net."""
    import mxnet as mx

    for attr in HEAD_ATTRS:
        if isinstance(getattr(net, attr, None), mx.gluon.Block):
            return attr
    raise ValueError(f"{type(net).__name__} has no classifier head named {' or '.join(HEAD_ATTRS)}; "
                     "pick a classification model from the GluonCV model zoo")


def replace_head(net: mx.gluon.HybridBlock, num_classes: int) -> str:
    """Put a new (uninitialised) `Dense(num_classes)` where the net's classifier was; returns its name.

    Gluon forbids changing a child's type, so a sequential head (mobilenetv2: 1x1 conv + flatten)
    becomes a sequential holding the Dense; the features before it are pooled in every zoo net.
    """
    import mxnet as mx
    from mxnet.gluon import nn

    attr = head_attr(net)
    old = getattr(net, attr)
    with net.name_scope():
        dense = nn.Dense(num_classes)
        if isinstance(old, nn.Dense):
            new = dense
        elif isinstance(old, (nn.HybridSequential, mx.gluon.nn.Sequential)):
            new = type(old)(prefix=f"{attr}_")
            new.add(dense)
        else:
            raise ValueError(f"cannot replace a head of type {type(old).__name__} ({attr})")
    setattr(net, attr, new)
    return attr


def _check_keys(loaded: dict, params: dict, head: str, path: Path) -> None:
    """ValueError listing backbone parameters the file lacks or has in excess (another architecture)."""
    backbone = {k for k in params if not k.startswith(head + ".")}
    got = {k for k in loaded if not k.startswith(head + ".")}
    missing, extra = sorted(backbone - got), sorted(got - backbone)
    if missing or extra:
        raise ValueError(f"{path}: does not fit this network: {len(missing)} parameter(s) missing "
                         f"{missing[:SHOWN_KEYS]}, {len(extra)} unexpected {extra[:SHOWN_KEYS]}; "
                         "is it a params file of the same --model (saved with save_parameters)?")


def load_backbone(net: mx.gluon.HybridBlock, path: str | Path, ctx: Sequence[mx.Context]) -> None:
    """Load every parameter but the head from a `save_parameters` file; the file's head is ignored."""
    import mxnet as mx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such params file (--pretrained-path)")
    loaded = mx.nd.load(str(path))
    if not isinstance(loaded, dict) or not any("." in k for k in loaded):
        raise ValueError(f"{path}: not a Gluon save_parameters file (expected structural names like "
                         "'features.0.weight')")
    head = head_attr(net)
    params = net._collect_params_with_prefix()  # the structural names save_parameters writes
    _check_keys(loaded, params, head, path)
    for key, param in params.items():
        if not key.startswith(head + "."):
            param._load_init(loaded[key], list(ctx))
    log.info("loaded %d backbone parameters from %s (head ignored)", len(params) - len(
        [k for k in params if k.startswith(head + ".")]), path)


def make_net(model_name: str, num_classes: int) -> mx.gluon.HybridBlock:
    """The architecture only: model-zoo `model_name` with a new `Dense(num_classes)` head, no weights.

    ValueError for an unknown name lists the valid ones (GluonCV's own message).
    """
    from gluoncv.model_zoo import get_model

    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    net = get_model(model_name, pretrained=False)
    replace_head(net, num_classes)
    return net


def build_net(
    model_name: str, num_classes: int, *, pretrained: str = "none", download: bool = False,
    root: str | Path | None = None, ctx=None, hybridize: bool = True,
) -> mx.gluon.HybridBlock:
    """Model-zoo net with a new Xavier-initialised `Dense(num_classes)` head on `ctx`, hybridized
    with static_alloc / static_shape. `pretrained`: "none" (random), "cache" (model store), or a path."""
    import mxnet as mx

    ctx = context_list(ctx)
    net = make_net(model_name, num_classes)
    if pretrained == "none":
        # GluonCV's from-scratch initialisation for ImageNet nets; the head gets its own below.
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=ctx)
        getattr(net, head_attr(net)).initialize(mx.init.Xavier(), ctx=ctx, force_reinit=True)
    else:
        path = cached_weights(model_name, root, download) if pretrained == "cache" else Path(pretrained)
        load_backbone(net, path, ctx)
        getattr(net, head_attr(net)).initialize(mx.init.Xavier(), ctx=ctx)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def load_run(run_dir: str | Path, ctx=None, which: str = "best") -> tuple[mx.gluon.HybridBlock, RunInfo]:
    """(net, run) of a trained run: rebuilt from its validated `config.json`, `<which>.params` loaded
    on `ctx` (any contexts, whatever the run was trained on), hybridized."""
    import mxnet as mx

    run = RunInfo.read(run_dir)
    params = run.verified_weights(which)
    net = make_net(run.model, run.num_classes)
    try:
        net.load_parameters(str(params), ctx=context_list(ctx))
    except (mx.base.MXNetError, AssertionError) as err:  # truncated, or another net's parameters
        last = next((line for line in reversed(str(err).splitlines()) if line.strip()), type(err).__name__)
        raise ValueError(f"{params} cannot be loaded into {run.model} ({last.strip()[:200]}): the file is damaged "
                         "or belongs to another net; restore it from a copy of the run, or train again") from None
    net.hybridize(static_alloc=True, static_shape=True)
    log.info("loaded %s (%s, %d classes) from %s", run.model, run.task, run.num_classes, params)
    return net, run
