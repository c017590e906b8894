"""Builds the hot modules of the request path with mypyc (C extensions); the pure-Python
package is the fallback: FASTAPI_RATELIMITS_PURE=1, or no mypyc or C compiler, installs it as is."""
import os
import runpy

from setuptools import setup

# the modules compiled: src/fastapi_ratelimits/compiled.py says which (the package checks them)
HOT = [f"src/fastapi_ratelimits/{m}.py" for m in runpy.run_path("src/fastapi_ratelimits/compiled.py")["HOT"]]


def ext_modules():
    if os.environ.get("FASTAPI_RATELIMITS_PURE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    exts = mypycify(["--config-file=mypyc.ini", *HOT], opt_level="3")
    for ext in exts:
        ext.optional = True
    return exts


setup(ext_modules=ext_modules())
