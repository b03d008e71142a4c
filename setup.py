"""Which packages and files the distribution holds; everything else about it is in pyproject.toml.

The import names do not follow the folders: ``kernels/`` installs as ``onlinepg.kernels`` and ``data/`` (the
shipped configs, read through ``onlinepg.shipped``) as ``onlinepg.data``. pyproject.toml's ``packages.find``
cannot rename a folder, so the packages are found here, under each root, and a new subpackage or data folder is
installed without touching this file.
"""
from setuptools import find_namespace_packages, find_packages, setup

ROOTS = {"onlinepg": "onlinepg", "onlinepg.kernels": "kernels", "onlinepg.data": "data"}


def subpackages(name, folder):
    # data/'s subfolders hold files, not modules: setuptools wants them listed as (namespace) packages
    found = (find_namespace_packages(folder, exclude=["figures", "figures.*", "results", "results.*", "*__pycache__*"])
             if name == "onlinepg.data" else find_packages(folder))
    return [name] + [f"{name}.{sub}" for sub in found]


setup(
    package_dir=ROOTS,
    packages=[pkg for name, folder in ROOTS.items() for pkg in subpackages(name, folder)],
    package_data={"": ["*.toml"]},        # configs, experiment specs, sweeps; not the figures
)
