"""Model factory: new heads on zoo nets, cached weights that never download, --pretrained-path files.

No network: nothing here passes download=True; the weights cache is always a tmp_path folder.
"""

import mxnet as mx
import numpy as np
import pytest

from fashionai.model import (build_net, cached_weights, head_attr, load_backbone, make_net, model_dir, replace_head,
                             weights_file_name)

X = mx.nd.random.uniform(shape=(2, 3, 32, 32))  # a 32 px batch: every net below accepts it


def _backbone(net):
    """{structural name: array} of every parameter outside the head (what --pretrained-path loads)."""
    head = head_attr(net)
    return {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()
            if not k.startswith(head + ".")}


@pytest.mark.parametrize("name,attr,k", [
    ("resnet18_v2", "output", 5),  # the ResNet*_v2 family (the default ResNet50_v2): `output`
    ("resnet18_v1b", "fc", 7),  # the v1b family: `fc`
    ("cifar_resnet20_v1", "output", 6),  # the demo preset's net
    ("mobilenetv2_0.25", "output", 3),  # a sequential head (1x1 conv + flatten) becomes Sequential(Dense)
])
def test_the_head_is_a_new_dense_of_k_classes_and_the_net_outputs_k_scores(name, attr, k):
    """Every task has its own class count; a zoo net keeps its 1000-class ImageNet head otherwise."""
    net = make_net(name, k)
    assert head_attr(net) == attr
    head = getattr(net, attr)
    dense = head if isinstance(head, mx.gluon.nn.Dense) else list(head._children.values())[-1]
    assert isinstance(dense, mx.gluon.nn.Dense) and dense._units == k
    net = build_net(name, k, pretrained="none", ctx=[mx.cpu()])
    assert net(X).shape == (2, k)


def test_replace_head_swaps_a_1000_class_classifier():
    """replace_head is what turns an ImageNet net into a task net: 1000 scores before, K after."""
    from gluoncv.model_zoo import get_model

    net = get_model("resnet18_v1b", pretrained=False)
    assert net.fc._units == 1000
    assert replace_head(net, 4) == "fc"
    net.initialize(ctx=mx.cpu())
    assert net(X).shape == (2, 4)


def test_unknown_model_name_lists_the_valid_ones_and_fewer_than_two_classes_is_refused():
    """A typo in --model must say which names exist (GluonCV's message), not fail deep inside."""
    with pytest.raises(ValueError, match="not among the following model list") as err:
        make_net("resnet_does_not_exist", 5)
    assert "resnet50_v2" in str(err.value) and "cifar_resnet20_v1" in str(err.value)
    for k in (1, 0):
        with pytest.raises(ValueError, match="num_classes must be >= 2"):
            make_net("cifar_resnet20_v1", k)


def test_missing_cached_weights_name_the_exact_file_and_folder(tmp_path, monkeypatch):
    """Offline machines: the user must learn which file to copy where, and nothing may download."""
    name = weights_file_name("ResNet50_v2")
    assert name.startswith("resnet50_v2-") and name.endswith(".params") and len(name) == len("resnet50_v2-") + 8 + 7
    folder = tmp_path / "models"
    assert model_dir(tmp_path) == folder
    with pytest.raises(FileNotFoundError) as err:
        cached_weights("ResNet50_v2", root=tmp_path)
    assert name in str(err.value) and str(folder) in str(err.value)
    with pytest.raises(FileNotFoundError, match=name):  # the same through the factory
        build_net("ResNet50_v2", 5, pretrained="cache", root=tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("MXNET_HOME", str(home))  # no root: $MXNET_HOME, read at call time
    with pytest.raises(FileNotFoundError) as err:
        cached_weights("ResNet50_v2")
    assert str(home / "models") in str(err.value)
    assert not folder.exists() and not (home / "models").exists()  # looked, created and fetched nothing


def test_a_cached_file_with_the_right_name_but_wrong_content_is_refused(tmp_path):
    """A truncated download must not be used (or silently replaced): the SHA-1 check refuses it."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / weights_file_name("ResNet50_v2")).write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="SHA-1"):
        cached_weights("ResNet50_v2", root=tmp_path)
    with pytest.raises(ValueError, match="SHA-1"):
        build_net("ResNet50_v2", 5, pretrained="cache", root=tmp_path)


def test_a_model_without_store_weights_says_what_to_do_instead():
    """`--pretrained cache` on a net the store has no weights for must point at the alternatives."""
    with pytest.raises(ValueError, match="--pretrained-path"):
        weights_file_name("resnet18_v1b_custom_does_not_exist")


@pytest.mark.parametrize("name", ["cifar_resnet20_v1", "resnet18_v1b"])
def test_pretrained_path_loads_the_backbone_and_gives_a_fresh_head(tmp_path, name):
    """--pretrained-path FILE: the saved backbone exactly, whatever head the file had; new K-class head."""
    mx.random.seed(1)
    source = build_net(name, 3, pretrained="none", ctx=[mx.cpu()])
    source(X)  # materialise the deferred shapes
    path = tmp_path / "source.params"
    source.save_parameters(str(path))
    head = head_attr(source)
    saved = {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items() if not k.startswith(head + ".")}
    assert saved.keys() == _backbone(source).keys() and saved
    mx.random.seed(2)
    net = build_net(name, 7, pretrained=str(path), ctx=[mx.cpu()])
    assert net(X).shape == (2, 7)
    loaded = _backbone(net)
    assert sorted(saved) == sorted(loaded)
    for key, value in saved.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    mx.random.seed(2)
    fresh = build_net(name, 7, pretrained="none", ctx=[mx.cpu()])
    fresh(X)
    # the load changed the backbone (a random init would not equal the file) ...
    key = next(iter(saved))
    assert not np.array_equal(_backbone(fresh)[key], saved[key])
    # ... and the head is new: K rows, not the file's 3
    assert getattr(net, head_attr(net)).weight.shape[0] == 7


def test_a_params_file_of_another_architecture_does_not_fit(tmp_path):
    """Loading resnet18_v1b weights into a cifar net must fail by name, not load half a network."""
    other = build_net("resnet18_v1b", 3, pretrained="none", ctx=[mx.cpu()])
    other(X)
    path = tmp_path / "other.params"
    other.save_parameters(str(path))
    with pytest.raises(ValueError, match="does not fit"):
        build_net("cifar_resnet20_v1", 5, pretrained=str(path), ctx=[mx.cpu()])


def test_pretrained_path_errors_missing_file_and_not_a_params_file(tmp_path):
    """A wrong --pretrained-path names the file; a non-Gluon file is refused before anything loads."""
    net = make_net("cifar_resnet20_v1", 5)
    with pytest.raises(FileNotFoundError, match="nope.params"):
        load_backbone(net, tmp_path / "nope.params", [mx.cpu()])
    flat = tmp_path / "flat.params"
    mx.nd.save(str(flat), [mx.nd.zeros((2, 2))])  # a list, not structural names
    with pytest.raises(ValueError, match="not a Gluon save_parameters file"):
        load_backbone(net, flat, [mx.cpu()])
