"""Build hook for the optional compiled search kernel; metadata lives in pyproject.toml.

`pow_mcp.pow.kernels._sha256` (pow_mcp/pow/kernels/c/: the search core sha256_search.c, which needs
no Python.h, and its binding module.c) holds the SHA-NI, AVX2, ARMv8 and portable C engines.
It is optional: where it cannot be compiled, the install still succeeds, says how to get the
fast path (in pip's output only with -v), and the kernels fall back to hashlib. No
-march=native: the ISA engines are compiled with per-function target attributes and picked at
run time, so the build runs on any CPU of its architecture.
"""

import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

C_DIR = os.path.join("pow_mcp", "pow", "kernels", "c")

# pip shows a build's output only when the build fails, or with -v: so this is read in verbose
# installs and build logs, and the installed package says the same at every server start and in
# `pow-mcp bench` (pow_mcp/pow/kernels/native.py). Never "pip install pow-mcp": pow-mcp is on no
# package index, and a package of that name there would be someone else's.
FAST_PATH_HELP = """
******************************************************************************************
pow-mcp: the compiled SHA-256 kernel could not be built ({error}).
pow-mcp is installed and works, but hashes with the pure-Python hashlib kernel, about 20x
slower. To get the fast path, install a pow-mcp wheel built for this platform (it carries
the kernel), or install a C compiler and Python's headers, then reinstall from the source:
  Debian/Ubuntu: apt install build-essential python3-dev    Fedora: dnf install gcc python3-devel
  macOS: xcode-select --install    Windows: Microsoft C++ Build Tools (Desktop C++ workload)
  then: pip install --force-reinstall --no-cache-dir /path/to/pow-mcp (the checkout or the
  sdist; in the checkout: make clean run)
******************************************************************************************
"""


class OptionalBuildExt(build_ext):
    """Builds the kernel if this machine can; if not, installs without it and says why."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (DistutilsPlatformError and the like)
            self.warn_fallback(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler failed
            self.warn_fallback(exc)

    @staticmethod
    def warn_fallback(exc: Exception) -> None:
        print(FAST_PATH_HELP.format(error=f"{type(exc).__name__}: {exc}"), file=sys.stderr)


# MSVC takes other flags (and C11 for _Alignas); everything else here is gcc or clang.
if os.name == "nt":
    compile_args = ["/O2", "/std:c11"]
else:
    compile_args = ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    # Python's own CFLAGS carry -g: for the unrolled engines that is 12 of gcc's 32 seconds
    # and a 5 MB object, for symbols a user never reads. A build that asks for -g in CFLAGS
    # (the sanitizer run, a debugging session) keeps it.
    if not any(flag.startswith("-g") for flag in os.environ.get("CFLAGS", "").split()):
        compile_args.append("-g0")

setup(
    packages=find_packages(include=["pow_mcp", "pow_mcp.*"]),
    ext_modules=[
        Extension(
            "pow_mcp.pow.kernels._sha256",
            sources=[os.path.join(C_DIR, "sha256_search.c"), os.path.join(C_DIR, "module.c")],
            depends=[os.path.join(C_DIR, h) for h in ("sha256_search.h", "sha256_lanes.h")],
            extra_compile_args=compile_args,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
