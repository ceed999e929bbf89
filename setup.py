"""Install cellgen: the Statistical Cell as scikit-learn estimators."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "cellgen" / "__init__.py").read_text()
).group(1)

setup(
    name="cellgen",
    version=VERSION,
    description=(
        "Deep generative models of cell organization (the Statistical Cell) "
        "as scikit-learn estimators"
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["cellgen", "cellgen.*"]),
    install_requires=[
        # torch is deliberately unpinned: install the build for your platform first.
        "torch>=2.1",
        "scikit-learn>=1.6",
        "skorch>=1.0",
        "safetensors>=0.4",
        "numpy>=1.24",
        "scipy>=1.11",
        "pandas>=2.0",
        "matplotlib>=3.7",
        "joblib>=1.3",
        "tifffile>=2023.1",
        "scikit-image>=0.21",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80", "numpydoc>=1.6", "sphinx>=7"],
        "docs": ["sphinx>=7", "numpydoc>=1.6"],
        "dask": ["dask>=2023.1"],
    },
    entry_points={"console_scripts": ["cellgen=cellgen.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
