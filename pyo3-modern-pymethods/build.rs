//! Exposes the exact PyO3 version this crate is compiled against (from Cargo.lock) as
//! the `PYO3_VERSION` environment variable of the compilation, for the module attribute.
use std::path::{Path, PathBuf};

fn find_lock(mut dir: &Path) -> Option<PathBuf> {
    loop {
        let candidate = dir.join("Cargo.lock");
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = dir.parent()?;
    }
}

/// The version of `pyo3` that package `me` depends on, read from a Cargo.lock text.
fn pyo3_version(lock: &str, me: &str) -> Option<String> {
    let packages: Vec<&str> = lock.split("[[package]]").collect();
    let field = |block: &str, key: &str| -> Option<String> {
        block.lines().find_map(|l| {
            l.strip_prefix(&format!("{key} = \""))
                .map(|rest| rest.trim_end_matches('"').to_string())
        })
    };
    let mine = packages.iter().find(|b| field(b, "name").as_deref() == Some(me))?;
    // With several pyo3 versions in one lock file, a dependency is written "pyo3 X.Y.Z".
    if let Some(v) = mine.lines().find_map(|l| l.trim().strip_prefix("\"pyo3 ")) {
        return Some(v.trim_end_matches(['"', ',']).to_string());
    }
    packages
        .iter()
        .find(|b| field(b, "name").as_deref() == Some("pyo3"))
        .and_then(|b| field(b, "version"))
}

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let me = std::env::var("CARGO_PKG_NAME").unwrap();
    let lock = find_lock(&manifest).expect("Cargo.lock not found above the crate");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).expect("Cargo.lock unreadable");
    let version = pyo3_version(&text, &me).expect("pyo3 not found in Cargo.lock");
    println!("cargo:rustc-env=PYO3_VERSION={version}");
}
