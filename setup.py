"""Build hook for the optional compiled search kernel; metadata lives in pyproject.toml.

`pow._sha256` (pow/_sha256.c) holds the SHA-NI, AVX2 and portable C search kernels. It is
optional: where it cannot be compiled (no C compiler), the install still succeeds and
pow.kernel falls back to the hashlib kernel. No -march=native: the x86 paths are compiled
with per-function target attributes and picked at run time, so the build runs on any CPU.
"""

import os

from setuptools import Extension, setup

# MSVC takes other flags; everything else here is gcc or clang.
compile_args = ["/O2"] if os.name == "nt" else ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            "pow._sha256",
            sources=["pow/_sha256.c"],
            extra_compile_args=compile_args,
            optional=True,
        )
    ]
)
