"""Package definition. Install with the pinned set: pip install -c constraints.txt -e ."""

from setuptools import find_packages, setup

setup(
    name="fashionai",
    version="0.1.0",
    description="MXNet Gluon pipeline for the FashionAI clothing-attribute challenge",
    python_requires=">=3.10",
    packages=find_packages(include=["fashionai", "fashionai.*"]),
    install_requires=[
        "mxnet==1.9.1",
        "numpy<1.24",
        "gluoncv",
        "pandas",
        "opencv-python-headless",
        "scipy",
        "matplotlib",
        "scikit-learn",
        "tqdm",
        "PyYAML",
    ],
    extras_require={"test": ["pytest"], "onnx": ["onnx==1.14.1", "onnxruntime"]},
    entry_points={"console_scripts": ["fashionai=fashionai.cli:main"]},
)
