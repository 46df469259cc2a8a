"""The fused CPU kernel, the one thing pyproject.toml cannot declare without a warning.

Plain C, no torch headers, built with OpenMP. Optional: where it cannot be compiled,
the install still succeeds and convdrop runs its PyTorch-level path, which gives the
same results (``tests/ops/test_native.py`` fails then, so a lost kernel is not silent).
Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "convdrop.ops._kernel",
    sources=["src/convdrop/ops/_kernel.c"],
    extra_compile_args=["-fopenmp"],
    extra_link_args=["-fopenmp"],
    optional=True,
)])
