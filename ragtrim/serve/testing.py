"""Run an ASGI app on a free loopback port in a background thread (tests, load tests).

>>> free_port() > 1024
True
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, *, port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``127.0.0.1``; yields its base URL and stops it on exit."""
    import uvicorn

    port = port if port is not None else free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on 127.0.0.1:{port} did not start within {timeout:g} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def _pg_bin(name: str) -> str | None:
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def postgres_available() -> bool:
    """True when ``initdb`` and ``pg_ctl`` can be found (Debian: ``apt-get install postgresql``)."""
    return _pg_bin("initdb") is not None and _pg_bin("pg_ctl") is not None


@contextmanager
def temp_postgres(*, max_connections: int = 200) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields its URL and removes it on exit.

    As root it runs as the ``postgres`` user (``runuser``), because PostgreSQL refuses root.
    """
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql (initdb and pg_ctl are needed)")
    prefix: list[str] = []
    root = tempfile.mkdtemp(prefix="ragtrim-pg-")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = f"{root}/data", free_port()
    try:
        subprocess.run(prefix + [initdb, "-D", data, "-U", "ragtrim", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c max_connections={max_connections} -c fsync=off"
        subprocess.run(prefix + [pg_ctl, "-D", data, "-o", opts, "-l", f"{root}/log", "-w", "-t", "60", "start"],
                       check=True, capture_output=True)
        try:
            subprocess.run(prefix + [_sibling(initdb, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "ragtrim", "ragtrim"],
                           check=True, capture_output=True)
            yield f"postgresql://ragtrim@127.0.0.1:{port}/ragtrim"
        finally:
            subprocess.run(prefix + [pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _sibling(sibling_of: str, name: str) -> str:
    """``name`` in the same directory as ``sibling_of`` (PostgreSQL's binaries live together)."""
    from pathlib import Path

    return str(Path(sibling_of).resolve().parent / name)
