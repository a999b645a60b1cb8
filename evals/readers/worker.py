"""Run a model in a worker process, so a native crash is a failed call, not a dead sweep.

llama.cpp is native code: on some CPUs it segfaults, and a large context can get the
process killed for memory. In the caller's process either would end a whole eval sweep (or
a service). :class:`ModelWorker` runs a *backend* (a class with ``__init__(**params)`` and
methods taking JSON-able keyword arguments) in a child process and talks to it over pipes,
one JSON line per call. When the child dies (signal, exit, out-of-memory kill) or does not
answer within ``timeout_s``, the call raises :class:`WorkerDied` with the reason (signal
name, exit code, the child's last stderr lines); the next call starts a fresh child. After
``max_crashes`` deaths in a row the worker stops restarting and every call fails at once,
so a sweep finishes quickly with every remaining call recorded as failed.

A call stopped in the caller (Ctrl-C, any exception while it waits) kills the child before
the exception goes on, and every reply carries its request's id: a late answer is never
taken for the next call's. A backend whose constructor fails (a model file that does not
load) is not retried with the same ``params``: every call fails with that error. The
child exits by itself when its parent process is gone, even in the middle of a call.

Readers turn :class:`WorkerDied` into a failed :class:`~evals.readers.base.ReaderOutput`;
finished calls are already in the reader cache, so nothing finished is lost.

>>> worker = ModelWorker("evals.readers.worker:EchoBackend", {"prefix": "> "})
>>> worker.call("generate", prompt="hello")
{'text': '> hello'}
>>> worker.close()
"""

from __future__ import annotations

import collections
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, NoReturn


class WorkerDied(RuntimeError):
    """The worker process died or hung during a call (the message says how)."""


class WorkerError(RuntimeError):
    """The backend raised an ordinary Python error in the worker (the worker lives on)."""


def describe_exit(returncode: int | None) -> str:
    """A person's words for a child's exit status.

    >>> describe_exit(-11)
    'killed by signal SIGSEGV (a crash in native code)'
    >>> describe_exit(-9)
    'killed by signal SIGKILL (out of memory, or killed from outside)'
    >>> describe_exit(3)
    'exited with status 3'
    """
    if returncode is None:
        return "still running"
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    why = {"SIGSEGV": "a crash in native code", "SIGBUS": "a crash in native code", "SIGILL": "an instruction this CPU lacks",
           "SIGABRT": "native code aborted", "SIGKILL": "out of memory, or killed from outside"}.get(name)
    return f"killed by signal {name}" + (f" ({why})" if why else "")


def child_env(defaults: dict[str, str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: this process's, plus each of ``defaults`` it does not set.

    >>> child_env({"OMP_WAIT_POLICY": "PASSIVE"}, {"PATH": "/bin"})
    {'OMP_WAIT_POLICY': 'PASSIVE', 'PATH': '/bin'}
    >>> child_env({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"})
    {'OMP_WAIT_POLICY': 'ACTIVE'}
    """
    return {**defaults, **(dict(os.environ) if environ is None else environ)}


class ModelWorker:
    """A backend ``"module:Class"`` built with ``params`` in a child process; see the module doc.

    Parameters
    ----------
    backend:
        ``"package.module:Class"``; the class is imported and built in the child.
    params:
        JSON-able keyword arguments for the backend's constructor.
    timeout_s:
        Seconds a call may take before the child is killed and the call fails.
    start_timeout_s:
        Seconds the start (a new child building the backend, i.e. loading the model) may take.
    max_crashes:
        Deaths in a row after which the worker stops restarting.
    env:
        Environment variables for the child, each used only where this process's environment does
        not set it (so a user's own setting wins). This process's environment is not changed.
    """

    def __init__(self, backend: str, params: dict[str, Any] | None = None, *, timeout_s: float = 300.0,
                 start_timeout_s: float = 600.0, max_crashes: int = 3, env: dict[str, str] | None = None) -> None:
        if ":" not in backend:
            raise ValueError(f"backend must be 'module:Class', got {backend!r}")
        for label, value in (("timeout_s", timeout_s), ("start_timeout_s", start_timeout_s)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
        if not isinstance(max_crashes, int) or max_crashes < 1:
            raise ValueError(f"max_crashes must be a positive integer, got {max_crashes!r}")
        self.backend = backend
        self.params = dict(params or {})
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_crashes = max_crashes
        self.env = dict(env or {})
        self.crashes = 0  # deaths in a row
        self.deaths: list[str] = []  # every death's reason, in order
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=12)
        self._pumps: list[tuple[threading.Thread, Any]] = []  # (thread, the child's stream it reads)
        self._sent = 0  # id of the last request written
        self._start_error: tuple[dict[str, Any], str] | None = None  # (params, message) of a failed start
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before the first call or after a death)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the child and build the backend now (what the first call would do)."""
        with self._lock:
            self._ensure_started()

    def call(self, op: str, **kwargs: Any) -> Any:
        """Run ``backend.op(**kwargs)`` in the child and return its result."""
        with self._lock:
            self._ensure_started()
            result = self._request({"op": op, "kwargs": kwargs}, self.timeout_s)
            self.crashes = 0  # a finished call ends a run of deaths
            return result

    def close(self) -> None:
        """Stop the child (it also exits by itself when this process ends)."""
        with self._lock:
            self._stop()

    def __enter__(self) -> ModelWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._start_error is not None and self._start_error[0] == self.params:
            raise WorkerError(self._start_error[1])
        if self.crashes >= self.max_crashes:
            raise WorkerDied(
                f"the model worker died {self.crashes} times in a row (last: {self.deaths[-1]}); "
                "not restarting it: every further call fails"
            )
        try:
            self._spawn()
            self._request({"op": "__init__", "kwargs": self.params}, self.start_timeout_s)
        except WorkerError as exc:  # the backend's constructor raised: the same params would fail again
            self._stop()
            message = f"the model worker could not start {self.backend} ({exc}); not retried with the same settings"
            self._start_error = (dict(self.params), message)
            raise WorkerError(message) from None
        except BaseException:  # e.g. Ctrl-C during the load: never leave a half-started child behind
            self._abandon()
            raise

    def _spawn(self) -> None:
        self._lines = queue.Queue()
        self._stderr.clear()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "evals.readers.worker", self.backend, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1, env=child_env(self.env),
        )
        proc, lines, err = self._proc, self._lines, self._stderr
        self._pumps = []
        for stream, put in ((proc.stdout, lines.put), (proc.stderr, lambda s: s is not None and err.append(s.rstrip()))):
            thread = threading.Thread(target=_pump, args=(stream, put), daemon=True)
            thread.start()
            self._pumps.append((thread, stream))

    def _request(self, message: dict[str, Any], timeout_s: float) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise WorkerDied("the model worker is not running")
        self._sent += 1
        try:
            reply = self._exchange(proc, {**message, "id": self._sent}, timeout_s)
        except (WorkerDied, WorkerError):
            raise
        except BaseException:  # e.g. Ctrl-C while waiting: its late answer must never be read as the next call's
            self._abandon()
            raise
        if not reply.get("ok"):
            raise WorkerError(reply.get("error") or "the backend failed")
        return reply.get("result")

    def _exchange(self, proc: subprocess.Popen[str], message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Write one request and return the reply with its id (a reply to an earlier request is dropped)."""
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            reply = self._reply_to(message["id"], time.monotonic() + timeout_s)
        except queue.Empty:
            label = "timeout_s" if timeout_s == self.timeout_s else "start_timeout_s"
            self._died(f"no answer within {label}={timeout_s:g} s, so it was killed")
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            self._died(None)
        return reply

    def _reply_to(self, request_id: int, deadline: float) -> dict[str, Any] | None:
        """The reply to ``request_id`` (None when the child's output ended); raises queue.Empty at ``deadline``."""
        while True:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            if line is None:
                return None
            reply = json.loads(line)
            if reply.get("id") == request_id:
                return reply

    def _died(self, reason: str | None) -> NoReturn:
        proc = self._proc
        if proc is not None:
            self._end(proc)
        why = reason if reason is not None else describe_exit(proc.returncode if proc is not None else None)
        tail = " | ".join(line for line in self._stderr if line.strip())[-400:]
        self._proc = None
        self.crashes += 1
        self.deaths.append(why)
        raise WorkerDied(f"the model worker died: {why}" + (f"; its last output: {tail}" if tail else ""))

    def _abandon(self) -> None:
        """Kill the child without counting a death (a call given up on by the caller); the next call starts a new one."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._end(proc)

    def _end(self, proc: subprocess.Popen[str]) -> None:
        """Kill ``proc`` if it runs, reap it, and close its pipes."""
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._close_pipes(proc)

    def _close_pipes(self, proc: subprocess.Popen[str]) -> None:
        """Let the pumps read the dead child's last lines, then close its pipes (no ResourceWarning later)."""
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:  # unwritten input to a dead child
                pass
        for thread, stream in self._pumps:
            thread.join(timeout=2)
            if not thread.is_alive():  # still reading (a grandchild holds the pipe): closing would block
                stream.close()
        self._pumps = []

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the child exits on end of input
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        self._close_pipes(proc)


def _pump(stream: Any, put: Any) -> None:
    """Forward a child's output line by line (None at its end)."""
    for line in stream:
        put(line)
    put(None)


class EchoBackend:
    """A backend with no model, for examples and tests: ``generate`` echoes the prompt."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def generate(self, prompt: str) -> dict[str, Any]:
        return {"text": self.prefix + prompt}


def _load_backend(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def exit_with_parent(parent: int | None, every_s: float = 0.5) -> None:
    """Exit this process (the child) as soon as ``parent`` is no longer its parent, even mid-call.

    A thread polls :func:`os.getppid`: the parent's death reparents the child. (Linux's
    ``PR_SET_PDEATHSIG`` would fire when the *thread* that started the child ends, e.g. a
    server's worker thread, killing a healthy model.) When ``parent`` is not the parent from the start
    (a launcher in between, as in a Windows venv) there is nothing to watch.
    """
    if parent is None or os.getppid() != parent:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def serve(spec: str, parent: int | None = None) -> int:
    """The child's loop: build the backend, answer one JSON line per request (with its id), exit at end of input."""
    exit_with_parent(parent)
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # native code printing to stdout must not corrupt the protocol
    backend: Any = None
    for line in sys.stdin:
        message = json.loads(line)
        op, kwargs = message["op"], message.get("kwargs") or {}
        try:
            if op == "__init__":
                backend = _load_backend(spec)(**kwargs)
                result = None
            else:
                result = getattr(backend, op)(**kwargs)
            reply = {"ok": True, "result": result}
        except Exception as exc:  # a Python error is an answer; the worker lives on
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps({"id": message.get("id"), **reply}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
