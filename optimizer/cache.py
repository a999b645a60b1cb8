"""Where ragtrim keeps what it builds or assembles: one cache folder for every model and cache.

``$RAGTRIM_CACHE`` when set, else ``$XDG_CACHE_HOME/ragtrim``, else ``~/.cache/ragtrim``.
The static embedding model, the int8 MiniLM, the assembled Gemma GGUF, FAISS corpus
vectors, the reader cache and the service's embedded database all live under it.

:func:`build_atomically` is the one way a folder is built there: into a temporary sibling,
then renamed, so a crash never leaves half a model and two processes building at once both
end with a whole one.

>>> import os, tempfile
>>> env = {"RAGTRIM_CACHE": "/srv/ragtrim"}
>>> str(cache_dir(env))
'/srv/ragtrim'
>>> str(cache_dir({"XDG_CACHE_HOME": "/var/cache"}))
'/var/cache/ragtrim'
>>> root = tempfile.mkdtemp()
>>> with build_atomically(os.path.join(root, "model")) as tmp:
...     _ = (tmp / "weights.bin").write_bytes(b"0")
>>> sorted(os.listdir(root)), os.listdir(os.path.join(root, "model"))
(['model'], ['weights.bin'])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The cache folder: ``$RAGTRIM_CACHE``, else ``$XDG_CACHE_HOME/ragtrim``, else ``~/.cache/ragtrim``.

    Always an absolute path: a relative one is taken from the current folder when the variable
    is read, so what ``ragtrim models list`` shows, the paths in errors and a child process that
    builds a model all name the same folder.

    >>> import os
    >>> cache_dir({"RAGTRIM_CACHE": "models"}) == Path(os.getcwd(), "models")
    True
    """
    env = os.environ if environ is None else environ
    if env.get("RAGTRIM_CACHE"):
        folder = Path(env["RAGTRIM_CACHE"]).expanduser()
    elif env.get("XDG_CACHE_HOME"):
        folder = Path(env["XDG_CACHE_HOME"]).expanduser() / "ragtrim"
    else:
        folder = Path.home() / ".cache" / "ragtrim"
    return Path(os.path.abspath(folder))


def process_umask() -> int:
    """This process's umask, read without changing it (Linux ``/proc``; elsewhere the usual 0o022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def share_as_umask(path: Path) -> None:
    """Give ``path`` (a file, or a folder and all below it) the modes a plain ``open``/``mkdir`` would.

    :func:`tempfile.mkdtemp` and :func:`tempfile.mkstemp` make owner-only folders and files (0700,
    0600); renamed into a shared cache as they are, other users could not read a model built there
    (or a tiktoken file seeded into tiktoken's shared cache).

    >>> root = Path(tempfile.mkdtemp()); (root / "m.bin").write_bytes(b"x") and None
    >>> share_as_umask(root)
    >>> oct(root.stat().st_mode & 0o777) == oct(0o777 & ~process_umask())
    True
    """
    mask = process_umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if p.is_symlink():
            continue
        executable = p.is_dir() or bool(p.stat().st_mode & 0o111)
        os.chmod(p, (0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def build_atomically(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success rename it to ``target``.

    If ``target`` appeared meanwhile (another process won the race) the new build is
    discarded and the existing one kept. On an exception nothing is left behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        yield tmp
        if not target.exists():
            share_as_umask(tmp)
            try:
                os.replace(tmp, target)
            except OSError:
                # another builder renamed its copy in between (ENOTEMPTY/EEXIST): a rename is atomic,
                # so what is there is whole; keep it and discard this copy (below)
                if not target.exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def build_file_atomically(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``target``; on success rename it over ``target``.

    The file counterpart of :func:`build_atomically` (e.g. a cached array): a reader never
    sees half a file; on an exception nothing is left behind.

    >>> root = Path(tempfile.mkdtemp())
    >>> with build_file_atomically(root / "vectors.npy") as tmp:
    ...     _ = tmp.write_bytes(b"data")
    >>> [p.name for p in root.iterdir()], (root / "vectors.npy").read_bytes()
    (['vectors.npy'], b'data')
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        share_as_umask(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
