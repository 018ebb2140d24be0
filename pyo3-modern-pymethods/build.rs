//! Build script of `pyo3-modern-pymethods`.
//!
//! 1. Sets PyO3's `cfg`s (`Py_3_10` and friends) for the interpreter the module is built
//!    for, as in PyO3 itself.
//! 2. Exports the PyO3 version recorded in `Cargo.lock` as the compile-time environment
//!    variable `PYO3_VERSION` (the module's `PYO3_VERSION`), as the 0.12 crate does: both
//!    call `build_support::export_pyo3_version` (the workspace's `build-support`).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    build_support::export_pyo3_version();
}
