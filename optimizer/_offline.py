"""tiktoken offline, without touching the environment or the network.

tiktoken downloads an encoding's BPE file on first use, unless its cache folder already
holds it (``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else
``<tmp>/data-gym-cache``), under the sha1 of the file's URL. ``llama-index-core`` ships
the files for ``cl100k_base`` and ``o200k_base`` under exactly those names.

:func:`load_encoding` builds an encoding from local files only: the packaged file, else the
one in tiktoken's cache folder (checked against tiktoken's sha256), else it raises
:class:`MissingBPEFile` naming the URL and the file to save it as. It never downloads and
never writes, so a read-only cache folder does not matter. :func:`seed_tiktoken_cache` also
copies the packaged files into that cache folder where it can (so code that calls
``tiktoken.get_encoding`` itself finds them); a folder it cannot write is left alone. No
environment variable is set, and a user's own cache setting is honoured.

>>> load_encoding("cl100k_base").encode_ordinary("hello world")
[15339, 1917]
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from optimizer.cache import build_file_atomically


class MissingBPEFile(FileNotFoundError):
    """An encoding's BPE file is neither packaged nor in tiktoken's cache folder; nothing is downloaded.

    ``url`` is where tiktoken would fetch it from, ``path`` the file in tiktoken's cache folder
    it is read from once saved there (None when the user turned tiktoken's cache off with ``""``).
    """

    def __init__(self, url: str, path: Path | None) -> None:
        self.url = url
        self.path = path
        super().__init__(f"{url} is not available offline" + (f" (looked for {str(path)!r})" if path else ""))


def packaged_tiktoken_cache() -> Path | None:
    """Return the folder of BPE files that llama-index-core ships, or None if absent."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "_static" / "tiktoken_cache"
        if candidate.is_dir():
            return candidate
    return None


def tiktoken_cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder tiktoken reads its cache from (None when the user disabled caching with ``""``).

    >>> str(tiktoken_cache_dir({"TIKTOKEN_CACHE_DIR": "/my/cache"}))
    '/my/cache'
    >>> tiktoken_cache_dir({"TIKTOKEN_CACHE_DIR": ""}) is None
    True
    """
    env = os.environ if environ is None else environ
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in env:
            return Path(env[name]) if env[name] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def cache_key(url: str) -> str:
    """The file name tiktoken caches ``url`` under (the sha1 of the URL).

    >>> cache_key("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken")
    '9b5ad71b2ce5302211f9c61530b329a4922fc6a4'
    """
    return hashlib.sha1(url.encode()).hexdigest()


def seed_tiktoken_cache() -> Path | None:
    """Copy the packaged BPE files into tiktoken's cache folder where missing; return that folder.

    Best effort: a folder that cannot be written (read-only, another user's ``<tmp>/data-gym-cache``)
    is left alone and None is returned; :func:`load_encoding` does not need the copies.
    """
    source = packaged_tiktoken_cache()
    target = tiktoken_cache_dir()
    if source is None or target is None:
        return target
    try:
        for bpe in source.iterdir():
            dest = target / bpe.name
            if bpe.is_file() and not dest.exists():
                with build_file_atomically(dest) as tmp:  # a reader never sees half a file
                    shutil.copyfile(bpe, tmp)
    except OSError:
        return None
    return target


def local_bpe_file(url: str, expected_hash: str | None = None) -> Path:
    """The local copy of tiktoken's file ``url``: the packaged one, else tiktoken's cached one.

    A cached file whose sha256 is not ``expected_hash`` does not count. Raises
    :class:`MissingBPEFile` when there is none; never downloads.
    """
    name = cache_key(url)
    folders = [packaged_tiktoken_cache(), tiktoken_cache_dir()]
    for folder in folders:
        path = folder / name if folder is not None else None
        if path is not None and path.is_file() and (expected_hash is None or _sha256(path) == expected_hash):
            return path
    raise MissingBPEFile(url, folders[1] / name if folders[1] is not None else None)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_bpe(tiktoken_bpe_file: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """``tiktoken.load.load_tiktoken_bpe`` from a local file (:func:`local_bpe_file`): the mergeable ranks."""
    path = local_bpe_file(tiktoken_bpe_file, expected_hash)
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _load_data_gym(vocab_bpe_file: str, encoder_json_file: str, vocab_bpe_hash: str | None = None,
                   encoder_json_hash: str | None = None, **kwargs: Any) -> dict[bytes, int]:
    """``tiktoken.load.data_gym_to_mergeable_bpe_ranks`` (gpt2), once both its files are in tiktoken's cache folder."""
    import tiktoken.load

    local_bpe_file(vocab_bpe_file, vocab_bpe_hash)
    local_bpe_file(encoder_json_file, encoder_json_hash)
    # both are cached and match their hashes: tiktoken reads them from its cache, no download, no write
    return tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file, encoder_json_file, vocab_bpe_hash, encoder_json_hash, **kwargs)


def _offline_constructor(constructor: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """``constructor`` (one of tiktoken's own, e.g. ``cl100k_base()``) reading its files with :func:`_load_bpe`.

    The same code under a copy of its module's globals, so nothing global is patched: the
    pattern and special tokens stay tiktoken's, only where the BPE file is read from changes.
    """
    names = {**constructor.__globals__, "load_tiktoken_bpe": _load_bpe, "data_gym_to_mergeable_bpe_ranks": _load_data_gym}
    return types.FunctionType(constructor.__code__, names, constructor.__name__, constructor.__defaults__, constructor.__closure__)


@functools.lru_cache(maxsize=None)
def load_encoding(name: str) -> Any:
    """The tiktoken ``Encoding`` called ``name``, built from local BPE files only (see the module doc).

    Raises :class:`MissingBPEFile` for an encoding whose file is neither packaged nor in tiktoken's
    cache folder, and ValueError for a name tiktoken does not know. An encoding from another
    ``tiktoken_ext`` plugin is left to tiktoken.
    """
    import tiktoken
    from tiktoken_ext import openai_public

    constructor = openai_public.ENCODING_CONSTRUCTORS.get(name)
    if not isinstance(constructor, types.FunctionType):
        return tiktoken.get_encoding(name)
    return tiktoken.Encoding(**_offline_constructor(constructor)())
