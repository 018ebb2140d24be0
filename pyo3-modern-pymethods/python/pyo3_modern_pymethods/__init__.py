"""Python awaitables written in Rust with today's PyO3 (#[pymethods]).

The compiled module does the work; this package re-exports it, and its ``baselines``
submodule (the same futures written with PyO3 ``async fn`` and pyo3-async-runtimes).
"""

import sys

from .pyo3_modern_pymethods import *  # noqa: F403
from .pyo3_modern_pymethods import RustAwait, RustCoroutine, RustFuture, __all__, __doc__  # noqa: F401

if sys.implementation.name == "pypy":
    # PyPy's `await` forwards a thrown exception as `throw(type, value, traceback)`. A
    # traceback handed to a C extension becomes a C-level proxy that PyPy's collector
    # cannot see through, and a cancelled Task's traceback refers back to the exception
    # (through `Task.__step`'s frame): that cycle would never be freed. The traceback is
    # the exception's own, so the exception alone says the same (src/compat.rs,
    # `raise_object`).
    def _without_own_traceback(c_throw):  # type: ignore[no-untyped-def]
        def throw(self, typ, val=None, tb=None, /):  # type: ignore[no-untyped-def]
            if (
                tb is not None
                and isinstance(typ, type)
                and isinstance(val, typ)
                and isinstance(val, BaseException)
                and val.__traceback__ is tb
            ):
                return c_throw(self, val)
            if tb is not None:
                return c_throw(self, typ, val, tb)
            return c_throw(self, typ) if val is None else c_throw(self, typ, val)

        throw.__doc__ = c_throw.__doc__
        return throw

    for _class in (RustCoroutine, RustAwait, RustFuture):
        _class.throw = _without_own_traceback(_class.throw)  # type: ignore[method-assign]
    del _class
