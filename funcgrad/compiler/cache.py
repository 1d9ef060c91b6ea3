"""The on-disk cache of compiled kernels, and the C++ compiler that fills it.

A translation unit is compiled once per machine: the shared library is stored under
:func:`cache_dir` (``$FUNCGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/funcgrad/kernels`` or
``~/.cache/funcgrad/kernels``), named by a hash of the source, the compiler's identity and
flags, and the CPU (the code is built for the host's instruction set). A compilation writes
a private temporary file and renames it into place, which is atomic: processes compiling
the same source at once each produce a complete library, and the last rename wins.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

COMPILE_TIMEOUT_S = 600


class CompileError(RuntimeError):
    """The compiler is missing, or rejected a translation unit (the message quotes it)."""


class Compiler(NamedTuple):
    command: tuple[str, ...]      # the executable and any flags given in $CXX
    identity: str                 # its --version banner and location (part of cache keys)


def cache_dir() -> Path:
    path = os.environ.get("FUNCGRAD_CACHE_DIR")
    if path:
        return Path(path)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "funcgrad" / "kernels"


@functools.lru_cache(maxsize=None)
def _find(cxx: str) -> Compiler | str:
    """The compiler named by ``cxx`` (as $CXX), or why it cannot be used."""
    command = tuple(shlex.split(cxx))
    exe = shutil.which(command[0]) if command else None
    if exe is None:
        return f"no C++ compiler found (looked for {cxx!r}; set $CXX to choose one)"
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"the C++ compiler {exe} does not run ({e})"
    if done.returncode != 0:
        return f"the C++ compiler {exe} does not run ({done.stderr.strip()[:200]})"
    banner = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    return Compiler((exe,) + command[1:], f"{os.path.realpath(exe)} {banner}")


def find_compiler() -> Compiler:
    """The C++ compiler ($CXX, else ``c++``); raises :class:`CompileError` saying why not."""
    found = _find(os.environ.get("CXX") or "c++")
    if isinstance(found, str):
        raise CompileError(found)
    return found


@functools.lru_cache(maxsize=None)
def host_identity() -> str:
    """What generated code depends on besides its source: the Python ABI, numpy's version,
    and the CPU's instruction set (kernels are built with -march=native)."""
    import numpy
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line
                    break
    except OSError:
        pass
    return " ".join([sys.implementation.cache_tag or "", sys.abiflags if hasattr(sys, "abiflags") else "",
                     numpy.__version__, platform.machine(), platform.system(), flags.strip()])


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


_precompiling: dict[Path, threading.Thread] = {}


def build(source: str, flags: tuple[str, ...], header: str | None = None) -> Path:
    """The shared library compiled from ``source`` with ``flags``: from the cache, or
    compiled now (and stored). ``header``: code the source starts with, shared by many
    sources; it is stored once and precompiled (GCC's precompiled headers) in the background,
    which saves later compilations most of their time (parsing Python's and numpy's
    headers)."""
    compiler = find_compiler()
    context = "\0".join([compiler.identity, " ".join(flags), host_identity()])
    directory = cache_dir()
    if header is not None:
        path = directory / f"fg_h_{_key(header, context)}.h"
        if not (directory / (path.name + ".gch")).exists() and path not in _precompiling:
            directory.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                _write_atomically(path, header.encode())
            thread = threading.Thread(target=_precompile, args=(compiler, flags, path),
                                      name="funcgrad-precompile")
            _precompiling[path] = thread
            thread.start()
        source = f'#include "{path}"\n{source}'
    key = _key(source, context)
    target = directory / f"fg_{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / f"fg_{key}.cpp"
    if not src.exists():
        _write_atomically(src, source.encode())
    _compile(compiler, [*flags, str(src)], target)
    return target


def wait_for_background_work() -> None:
    """Wait for the precompiled headers being built (the interpreter waits at exit too)."""
    for thread in list(_precompiling.values()):
        thread.join()


def _precompile(compiler: Compiler, flags: tuple[str, ...], header: Path) -> None:
    """Precompile ``header`` next to itself; a failure only costs speed (the compiler then
    reads the header as text)."""
    compile_only = [f for f in flags if f != "-shared" and not f.startswith("-l")]
    try:
        _compile(compiler, [*compile_only, "-x", "c++-header", str(header)],
                 header.with_name(header.name + ".gch"))
    except CompileError:
        pass


def _compile(compiler: Compiler, args: list[str], target: Path) -> None:
    """Run the compiler with output to a private file, then rename it to ``target``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        cmd = [*compiler.command, *args, "-o", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{shlex.join(cmd)} failed to run: {e}") from None
        if done.returncode != 0:
            raise CompileError(f"{shlex.join(cmd)} failed:\n{done.stderr.strip()[-4000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
