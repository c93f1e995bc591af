"""Package definition. Install with the pinned set: pip install -c constraints.txt -e ."""

from setuptools import find_packages, setup

setup(
    name="fashionai",
    version="0.1.0",
    description="MXNet Gluon pipeline for the FashionAI clothing-attribute challenge",
    python_requires=">=3.10",
    packages=find_packages(include=["fashionai", "fashionai.*"]),
    # MXNet is an extra, one per build (cpu, cu112, cu117; scripts/bootstrap.sh picks one): were it
    # required here, any reinstall (`pip install -e .`) would put the CPU build back over a CUDA one
    install_requires=[
        "numpy<1.24",
        "gluoncv",
        "pandas",
        "opencv-python-headless",
        "scipy",
        "matplotlib",
        "scikit-learn",
        "tqdm",
        "PyYAML",
        "pillow",
        "tensorboardX==2.6.2.2",  # train --tensorboard (imported only there)
    ],
    # onnx 1.14.1: newer onnx dropped an API MXNet 1.9.1's exporter uses; protobuf 4.x: 3.20 has no
    # Python 3.11 wheel and its pure-Python fallback makes loading a ResNet50 ONNX file take a minute
    extras_require={"test": ["pytest", "pytest-xdist"], "onnx": ["onnx==1.14.1", "onnxruntime==1.18.1", "protobuf==4.25.8"],
                    "openvino": ["openvino==2026.4.1"],  # predict / submit --engine openvino|auto
                    "cpu": ["mxnet==1.9.1"], "cu112": ["mxnet-cu112==1.9.1"], "cu117": ["mxnet-cu117==1.9.1"]},
    entry_points={"console_scripts": ["fashionai=fashionai.cli:main"]},
)
