"""Shared fixtures. Thread settings go first: MXNet reads OMP_NUM_THREADS once, at import."""

from fashionai.runtime import configure_threads

configure_threads()


# --- prepared_data (prepare) ---------------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prepared_data(demo_data, tmp_path_factory):
    """The demo data prepared once per session (seed 0, val fraction 0.1); tests must not modify it."""
    from fashionai.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    prepare(demo_data, out, workers=2)
    return out


# --- demo_data (demodata) ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small demo data root, made once per session; tests must not modify it.

    Seed 0, all 8 tasks, 8 train + 3 test per class, 3 warm-up per skirt class, long side 96-160 px
    (612 images, ~2 s); tests/test_demodata.py hand-computes its expectations from these numbers.
    """
    from fashionai.demodata import make_demo_data

    root = tmp_path_factory.mktemp("demo") / "data"
    make_demo_data(root, train_per_class=8, test_per_class=3, warmup_per_class=3, min_size=96,
                   max_size=160, seed=0)
    return root


# --- trained_run (train) -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def trained_run(prepared_data, tmp_path_factory):
    """A small from-scratch run on the prepared demo data (skirt length, 32 px, 2 epochs, ~5 s) for
    prediction / evaluation / export tests: real run-dir files, not a model that must be good."""
    from fashionai.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig.demo("skirt_length_labels", prepared_data, out, model="cifar_resnet20_v1",
                              data_shape=32, epochs=2, batch_size=16, warmup_epochs=0)
    return fit(config)
