"""The build-time variables of the interpreter, as PyO3 0.12.4's build script must read them.

Cargo's ``[env]`` (``.cargo/config.toml`` beside this directory) names this module in
``_PYTHON_SYSCONFIGDATA_NAME`` for the processes Cargo starts (build scripts), so
``sysconfig.get_config_vars()`` there reads ``build_time_vars`` from here: the
interpreter's own, unchanged, except on a debug build (``Py_DEBUG``) without
``Py_TRACE_REFS``, every debug build since CPython 3.8 unless configured
``--with-trace-refs``.

There PyO3 0.12.4's build script (``fix_config_map``) turns ``Py_DEBUG = 1`` into
``Py_REF_DEBUG``, ``Py_TRACE_REFS`` and ``COUNT_ALLOCS``, as CPython 2 did. The last two
change the C layout PyO3 compiles in: ``PyObject`` with the ``_ob_next``/``_ob_prev``
pointers before ``ob_refcnt``, ``PyTypeObject`` with the COUNT_ALLOCS counters (gone in
3.9), and ``PyModule_Create2TraceRefs`` for ``PyModule_Create2``. Only the symbol shows
(the module does not import); forwarding that symbol would leave every ``Py_TYPE`` and
type object of PyO3 reading at the wrong offset. So this tells the build script what the
ABI really is: ``Py_DEBUG = 0`` (PyO3 0.12 reads it only to derive the other three) and
``Py_REF_DEBUG = 1`` (PyO3's ``Py_INCREF``/``Py_DECREF`` then call ``Py_IncRef``/
``Py_DecRef``, which keep a debug interpreter's reference total right). The crate's own
``build.rs`` refuses a ``Py_TRACE_REFS`` build, whose layout PyO3 0.12 gets right but
whose COUNT_ALLOCS fields it adds wrongly.
"""

from __future__ import annotations

import importlib
import os
import sysconfig
from typing import Any

_OURS = "_PYTHON_SYSCONFIGDATA_NAME"


def _real_name() -> str:
    """The name the interpreter's sysconfig would use without us."""
    ours = os.environ.pop(_OURS, None)
    try:
        return str(sysconfig._get_sysconfigdata_name())  # type: ignore[attr-defined]
    finally:
        if ours is not None:
            os.environ[_OURS] = ours


build_time_vars: dict[str, Any] = dict(importlib.import_module(_real_name()).build_time_vars)
if build_time_vars.get("Py_DEBUG") and not build_time_vars.get("Py_TRACE_REFS"):
    build_time_vars["Py_DEBUG"] = 0
    build_time_vars["Py_REF_DEBUG"] = 1
