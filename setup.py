"""Build circuits_vision._C: CPU kernels always, CUDA kernels when they can be built.

The CUDA sources are compiled when ``CUDA_HOME`` is found and either a GPU is
visible or ``FORCE_CUDA=1`` is set (the rule torchvision uses), so a machine
without a GPU can still prove that they compile. ``TORCH_CUDA_ARCH_LIST`` is
honoured by torch's extension builder (use ``9.0`` for H100/H200).
"""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def _sources():
    cpp = sorted(glob.glob(os.path.join(CSRC, "*.cpp")))
    cpp += sorted(glob.glob(os.path.join(CSRC, "ops", "*.cpp")))
    cpp += sorted(glob.glob(os.path.join(CSRC, "ops", "cpu", "*.cpp")))
    cuda = sorted(glob.glob(os.path.join(CSRC, "ops", "cuda", "*.cu")))
    return cpp, cuda


def _want_cuda():
    force = os.environ.get("FORCE_CUDA", "0") == "1"
    if CUDA_HOME is None:
        if force:
            raise RuntimeError(
                "FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the CUDA install (e.g. /usr/local/cuda)"
            )
        return False
    return force or torch.cuda.is_available()


def _extension():
    cpp, cuda = _sources()
    cxx_flags = ["-O3"]
    openmp = os.environ.get("CIRCUITS_VISION_OPENMP", "1") == "1"
    if openmp:
        cxx_flags.append("-fopenmp")
    link_args = ["-fopenmp"] if openmp else []
    define_macros = []
    if _want_cuda():
        print(
            f"circuits_vision: building CPU kernels ({len(cpp)} files) and CUDA kernels ({len(cuda)} files) "
            f"with CUDA_HOME={CUDA_HOME}, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '<torch default>')}"
        )
        define_macros.append(("WITH_CUDA", None))
        return CUDAExtension(
            "circuits_vision._C",
            cpp + cuda,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            extra_link_args=link_args,
        )
    print(
        f"circuits_vision: building CPU kernels only ({len(cpp)} files); "
        f"CUDA_HOME={CUDA_HOME}, GPU visible={torch.cuda.is_available()}, FORCE_CUDA={os.environ.get('FORCE_CUDA', '0')}"
    )
    return CppExtension(
        "circuits_vision._C",
        cpp,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_args,
    )


# CIRCUITS_VISION_SKIP_EXT=1 installs the Python package alone (the Makefile's editable
# install does this and then builds the extension in place, incrementally).
_SKIP_EXT = os.environ.get("CIRCUITS_VISION_SKIP_EXT", "0") == "1"

setup(
    ext_modules=[] if _SKIP_EXT else [_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
