"""Say what is compiling while it compiles, and keep a count of what compiled.

numba compiles a kernel on its first call with new argument types and caches the
machine code on disk; a cache miss costs seconds.  A listener on numba's
``numba:compile`` event (fired only on a cache miss, never on a cache load) prints
one line to stderr when one of this package's kernels starts compiling and one
when it is done, so a first call that takes seconds says why.  Helpers compiled
inside a kernel's compilation are not reported separately.

``NUMBA_DWCONV_COMPILE_MESSAGES=0`` (or :func:`set_compile_messages`) silences the
lines; :func:`compiled_kernels` lists what compiled in this process either way
(the warm-up command and its test use it to prove a process loaded everything).
"""

from __future__ import annotations

import os
import sys
import threading
import time

_PACKAGE = __name__.rsplit(".", 1)[0]
_state = threading.local()
_compiled: list = []
_messages = os.environ.get("NUMBA_DWCONV_COMPILE_MESSAGES", "1").strip().lower() not in ("0", "false", "no", "off")


def set_compile_messages(enabled: bool) -> bool:
    """Turn the compile progress lines on stderr on or off; returns the previous setting."""
    global _messages
    previous, _messages = _messages, bool(enabled)
    return previous


def compiled_kernels() -> list:
    """Names (``module.function``) of this package's kernels compiled (not loaded from the cache) in this process."""
    return list(_compiled)


def _kernel_name(dispatcher) -> str | None:
    func = getattr(dispatcher, "py_func", None)
    module = getattr(func, "__module__", "") or ""
    if not module.startswith(_PACKAGE + "."):
        return None
    return f"{module[len(_PACKAGE) + 1:]}.{func.__name__}"


def _cache_folder(dispatcher) -> str:
    cache = getattr(dispatcher, "_cache", None)
    path = getattr(cache, "cache_path", None)
    return path if isinstance(path, str) else "numba's cache"


def _dtypes(args) -> str:
    """The element types of the array arguments (what a new compilation is usually for)."""
    names = []
    for a in args:
        name = str(getattr(a, "dtype", ""))
        if name and getattr(a, "ndim", None) is not None and name not in names:
            names.append(name)
    return "/".join(names) or "scalars"


class _Reporter:
    """The listener's methods: reports the outermost compilation of each of our kernels."""

    def on_start(self, event):
        depth = getattr(_state, "depth", 0)
        _state.depth = depth + 1
        if depth:
            return
        data = event.data or {}
        name = _kernel_name(data.get("dispatcher"))
        _state.current = (name, time.perf_counter()) if name else None
        dtypes = _dtypes(data.get("args", ()))
        _state.quiet = dtypes == "scalars"  # the small helpers of the fused activations: a fraction of a second
        if name and _messages and not _state.quiet:
            print(f"numba_dwconv: compiling {name} for {dtypes} arrays -- once per machine, "
                  f"then loaded from {_cache_folder(data['dispatcher'])}", file=sys.stderr, flush=True)

    def on_end(self, event):
        _state.depth = max(0, getattr(_state, "depth", 1) - 1)
        current = getattr(_state, "current", None)
        if _state.depth or not current:
            return
        _state.current = None
        name, start = current
        _compiled.append(name)
        if _messages and not getattr(_state, "quiet", False):
            print(f"numba_dwconv: compiled {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)



_installed = set()


def install(event_module, kind: str = "numba:compile") -> None:
    """Listen to the compile event ``kind`` of ``event_module`` (numba's, or numba-cuda's own copy).

    Best effort: an event module that refuses the kind (another numba version) only costs the messages.
    """
    if (event_module.__name__, kind) in _installed:
        return
    _installed.add((event_module.__name__, kind))
    listener = type("CompileReporter", (_Reporter, event_module.Listener), {})
    try:
        event_module.register(kind, listener())
    except (ValueError, TypeError, AttributeError):
        pass
