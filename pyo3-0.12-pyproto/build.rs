//! Build script of `pyo3-0-12-pyproto`.
//!
//! 1. Refuses to build for a free-threaded (PEP 703, `Py_GIL_DISABLED`) interpreter:
//!    PyO3 0.12's `ffi` object layout (`ob_refcnt` as the first field, no `ob_tid`,
//!    no biased reference counts) predates free-threading, so the module would
//!    corrupt memory from its first `Py_INCREF`. PyO3 0.12's own build script does
//!    not know about that flag and would happily produce the broken module.
//!    Likewise refuses PyPy: see `pypy_target`.
//! 2. Exports the PyO3 version recorded in `Cargo.lock` as the compile-time environment
//!    variable `PYO3_VERSION` (the module's `PYO3_VERSION`), as the modern crate does:
//!    both call `build_support::export_pyo3_version` (the workspace's `build-support`).
//! 3. Sets `cfg(pyiter_check_is_function)` for CPython 3.8+, whose `PyIter_Check` is an
//!    exported function. PyO3 0.12's `ffi::PyIter_Check` is the 3.7 macro, which links
//!    `_PyObject_NextNotImplemented`, a symbol CPython 3.13 no longer exports (importing
//!    the module would fail with "undefined symbol").
//! 4. Sets `cfg(py_enter_recursive_call_is_function)` for CPython 3.9+, which exports
//!    `Py_EnterRecursiveCall` / `Py_LeaveRecursiveCall` as functions; on 3.7 and 3.8
//!    they are macros over the thread state, which `src/compat.rs` re-creates.
//! 5. Refuses a `Py_TRACE_REFS` interpreter (configured `--with-trace-refs`): PyO3
//!    0.12's build script would add the COUNT_ALLOCS fields (gone since 3.9) to its
//!    `PyTypeObject`. Every other debug build (`Py_DEBUG`) is built for its real ABI:
//!    `.cargo/config.toml` and `build-python/_sysconfigdata_pyo3_0_12.py` show PyO3's
//!    build script the flags without the `Py_TRACE_REFS` it would otherwise assume.
//! 6. Sets `cfg(py_is_finalizing_is_public)` for CPython 3.13+, which exports
//!    `Py_IsFinalizing`; before, the same function is `_Py_IsFinalizing` (`src/ffi.rs`).
//!
//! The interpreter is found the way PyO3 0.12's build script finds it (`PYO3_PYTHON`,
//! then `PYTHON_SYS_EXECUTABLE`, then `python` / `python3` on `PATH`); maturin sets
//! `PYO3_PYTHON` to the interpreter it builds for.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{self, Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "PYO3_PYTHON",
        "PYTHON_SYS_EXECUTABLE",
        "PYO3_CONFIG_FILE",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    println!("cargo:rustc-check-cfg=cfg(pyiter_check_is_function)");
    println!("cargo:rustc-check-cfg=cfg(py_enter_recursive_call_is_function)");
    println!("cargo:rustc-check-cfg=cfg(py_is_finalizing_is_public)");
    let target = target_interpreter();
    if target.as_ref().is_none_or(|t| t.minor >= 8) {
        println!("cargo:rustc-cfg=pyiter_check_is_function");
    }
    if target.as_ref().is_none_or(|t| t.minor >= 9) {
        println!("cargo:rustc-cfg=py_enter_recursive_call_is_function");
    }
    if target.as_ref().is_none_or(|t| t.minor >= 13) {
        println!("cargo:rustc-cfg=py_is_finalizing_is_public");
    }

    // ANCHOR: free_threaded
    if let Some(reason) = free_threaded_target(target.as_ref()) {
        eprintln!(
            "error: pyo3-0-12-pyproto cannot be built for a free-threaded Python ({reason}).\n\
             PyO3 0.12's object layout (PyObject header, reference counting) predates PEP 703 \
             free-threading (Py_GIL_DISABLED); the extension would corrupt memory. \
             Build it for a GIL-enabled CPython instead, or use the \
             pyo3-modern-pymethods crate."
        );
        process::exit(1);
    }
    // ANCHOR_END: free_threaded

    if target.as_ref().is_some_and(|t| t.trace_refs) {
        eprintln!(
            "error: pyo3-0-12-pyproto cannot be built for a Python configured with \
             --with-trace-refs (Py_TRACE_REFS): PyO3 0.12's build script would give its \
             PyTypeObject the COUNT_ALLOCS fields CPython removed in 3.9. Any other \
             debug build (Py_DEBUG) is fine."
        );
        process::exit(1);
    }

    // ANCHOR: pypy
    if let Some(reason) = pypy_target(target.as_ref()) {
        eprintln!(
            "error: pyo3-0-12-pyproto cannot be built for PyPy ({reason}).\n\
             PyO3 0.12 targets CPython's C API and object layout: for PyPy 3.11 it lacks the \
             i128 conversion this crate uses and links CPython-only symbols of its own \
             (PyObject_GC_UnTrack, PyCFunction_NewEx, PyUnicode_AsUTF8AndSize), and every \
             error it fetches hands the traceback to PyPy's C layer, where a traceback \
             that refers back to its exception (asyncio's cancellations) is never freed. \
             Use the pyo3-modern-pymethods crate on PyPy."
        );
        process::exit(1);
    }
    // ANCHOR_END: pypy

    let version = build_support::export_pyo3_version();
    if !version.starts_with("0.12.") {
        eprintln!("error: pyo3-0-12-pyproto expects PyO3 0.12.x, Cargo resolved {version}");
        process::exit(1);
    }
}

/// What `build.rs` needs to know about the interpreter the module is built for.
struct Target {
    python: PathBuf,
    minor: u32,
    gil_disabled: bool,
    trace_refs: bool,
    implementation: String,
}

fn target_interpreter() -> Option<Target> {
    let python = interpreter()?;
    let output = Command::new(&python)
        .args([
            "-c",
            "import sys, sysconfig; \
             print(sys.version_info[1], sysconfig.get_config_var('Py_GIL_DISABLED'), \
             sysconfig.get_config_var('Py_TRACE_REFS'), sys.implementation.name)",
        ])
        .output()
        .ok()?;
    // An interpreter that cannot run is PyO3's build script's problem to report.
    if !output.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut fields = stdout.split_whitespace();
    let minor = fields.next()?.parse().ok()?;
    let gil_disabled = fields.next() == Some("1");
    let trace_refs = fields.next() == Some("1");
    let implementation = fields.next().unwrap_or("cpython").to_owned();
    Some(Target {
        python,
        minor,
        gil_disabled,
        trace_refs,
        implementation,
    })
}

/// `Some(reason)` when the target interpreter is a free-threaded build.
fn free_threaded_target(target: Option<&Target>) -> Option<String> {
    if let Some(config) = env::var_os("PYO3_CONFIG_FILE") {
        // Newer PyO3 config files (also written by maturin) list the build flags.
        let text = fs::read_to_string(&config).unwrap_or_default();
        let flagged = text.lines().any(|line| {
            line.trim_start().starts_with("build_flags") && line.contains("Py_GIL_DISABLED")
        });
        if flagged {
            return Some(format!(
                "PYO3_CONFIG_FILE {} has Py_GIL_DISABLED in build_flags",
                Path::new(&config).display()
            ));
        }
    }
    let target = target?;
    target.gil_disabled.then(|| {
        format!(
            "{} reports sysconfig Py_GIL_DISABLED = 1",
            target.python.display()
        )
    })
}

/// `Some(reason)` when the target interpreter is PyPy (from `PYO3_CONFIG_FILE`, else the
/// interpreter itself).
fn pypy_target(target: Option<&Target>) -> Option<String> {
    if let Some(config) = env::var_os("PYO3_CONFIG_FILE") {
        let text = fs::read_to_string(&config).unwrap_or_default();
        if text
            .lines()
            .any(|line| line.trim().eq_ignore_ascii_case("implementation=PyPy"))
        {
            return Some(format!(
                "PYO3_CONFIG_FILE {} has implementation=PyPy",
                Path::new(&config).display()
            ));
        }
    }
    let target = target?;
    (target.implementation == "pypy").then(|| format!("{} is PyPy", target.python.display()))
}

fn interpreter() -> Option<PathBuf> {
    if let Some(exe) = env::var_os("PYO3_PYTHON").or_else(|| env::var_os("PYTHON_SYS_EXECUTABLE")) {
        return Some(exe.into());
    }
    ["python", "python3"]
        .iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .map(|out| {
                    out.stdout.starts_with(b"Python 3") || out.stderr.starts_with(b"Python 3")
                })
                .unwrap_or(false)
        })
        .map(PathBuf::from)
}
