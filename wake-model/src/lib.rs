//! The model check of the bridge's wake-up protocol lives in `tests/loom_wake.rs`: it
//! includes `src/wake.rs` of both era crates (the files themselves, not copies) and runs
//! them under loom. Run it with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p wake-model --release
//! ```
//!
//! (`tools/wake_model.sh` bounds loom's preemptions so that it takes a few minutes at
//! most; the `build-checks` tox environment runs it.)
