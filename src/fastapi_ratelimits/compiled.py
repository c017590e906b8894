"""The modules of the request path that the wheel compiles with mypyc, and a check of them.

``pip install`` (and ``pip install -e .``) builds the modules of :data:`HOT` into C
extensions with mypyc (``setup.py``); the same ``.py`` files are the pure-Python package,
which is what runs when the build is skipped (``FASTAPI_RATELIMITS_PURE=1`` at install
time) or cannot be made (no C compiler): the same code, the same decisions, more
instructions per request (``docs/performance.md``).

An editable install builds the extensions next to the sources (``src/fastapi_ratelimits/
*.so``); Python then imports the extension, not the ``.py``. After editing one of these
modules, run ``pip install -e .`` again (or install with ``FASTAPI_RATELIMITS_PURE=1``
while working on them): :func:`stale` names the extensions older than their source, and
importing the package warns about them.
"""

from __future__ import annotations

import glob
import importlib.machinery
import os
import warnings

#: the modules compiled, as paths under the package without ``.py`` (setup.py reads this)
HOT: tuple[str, ...] = (
    "http/middleware", "http/routes",
    "core/gate", "core/engine", "core/matching", "core/clientip", "core/identity", "core/decision",
    "ops/metrics",
    "headers/render", "headers/dialects", "headers/ietf10", "headers/legacy", "headers/builtin",
    "storage/checks", "storage/keys", "storage/memory", "storage/refusals", "storage/batching",
    "storage/redis/batch", "storage/redis/wire",
    "algorithms/base", "algorithms/fixed_window", "algorithms/gcra", "algorithms/token_bucket",
    "algorithms/leaky_bucket", "algorithms/sliding_window",
)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _extension(module: str) -> str | None:
    """The path of ``module``'s compiled extension next to its source, if there is one."""
    base = os.path.join(_HERE, *module.split("/"))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


def compiled() -> dict[str, bool]:
    """For each module of :data:`HOT` (dotted, e.g. ``storage.memory``): is it compiled here?"""
    return {m.replace("/", "."): _extension(m) is not None for m in HOT}


def _built_at(ext: str) -> float:
    """When the code of a compiled module was built: its extension is a small shim (left
    alone by a rebuild that does not change it); the code is in mypyc's shared library
    beside the package (``*__mypyc*``), which every rebuild writes."""
    shared = glob.glob(os.path.join(glob.escape(os.path.dirname(_HERE)), "*__mypyc*"))
    return max([os.path.getmtime(ext), *(os.path.getmtime(lib) for lib in shared)])


def stale() -> list[str]:
    """The modules whose compiled code is older than their ``.py`` (edited or checked out
    after the build): Python would run the old code."""
    out = []
    for m in HOT:
        ext = _extension(m)
        source = os.path.join(_HERE, *m.split("/")) + ".py"
        if ext is not None and os.path.exists(source) and os.path.getmtime(source) > _built_at(ext):
            out.append(m.replace("/", "."))
    return out


def warn_if_stale() -> None:
    found = stale()
    if found:
        warnings.warn(
            f"fastapi_ratelimits: compiled modules older than their source: {', '.join(found)}; "
            "Python runs the compiled (old) code. Run `pip install -e .` again, or reinstall with "
            "FASTAPI_RATELIMITS_PURE=1 to run the sources.",
            RuntimeWarning,
            stacklevel=3,
        )
