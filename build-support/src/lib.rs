//! What the build scripts of both era crates share.
//!
//! Each crate's module has a `PYO3_VERSION` attribute: the exact PyO3 release it was
//! compiled against. Cargo tells a build script the versions of its own package, not of
//! its dependencies, so both build scripts call [`export_pyo3_version`], which reads it
//! from the `Cargo.lock` that resolved the build and exports it as the compile-time
//! environment variable `PYO3_VERSION` (read with `env!("PYO3_VERSION")`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// Exports the version of PyO3 the package being built depends on as the compile-time
/// environment variable `PYO3_VERSION`, and returns it. Call it from `build.rs`.
///
/// The version comes from the nearest `Cargo.lock` above the package that lists it; with
/// no such lock file (a crate built on its own), from the `pyo3` requirement in the
/// package's `Cargo.toml` (exact for a pin such as `=0.12.4`).
///
/// # Panics
///
/// When neither names a PyO3 version, or outside a build script (no
/// `CARGO_MANIFEST_DIR` / `CARGO_PKG_NAME`).
pub fn export_pyo3_version() -> String {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let package = env::var("CARGO_PKG_NAME").expect("set by cargo");
    let version = version_from_lock_files(&manifest_dir, &package)
        .or_else(|| {
            let manifest = manifest_dir.join("Cargo.toml");
            println!("cargo:rerun-if-changed={}", manifest.display());
            pyo3_requirement(&fs::read_to_string(&manifest).ok()?)
        })
        .unwrap_or_else(|| panic!("no pyo3 version for {package} in Cargo.lock or Cargo.toml"));
    println!("cargo:rustc-env=PYO3_VERSION={version}");
    version
}

fn version_from_lock_files(manifest_dir: &Path, package: &str) -> Option<String> {
    manifest_dir.ancestors().find_map(|dir| {
        let lock = dir.join("Cargo.lock");
        let text = fs::read_to_string(&lock).ok()?;
        println!("cargo:rerun-if-changed={}", lock.display());
        pyo3_version(&text, package)
    })
}

/// The version of `pyo3` that `package` depends on, from the text of a `Cargo.lock`.
///
/// A dependency is listed as `"pyo3"` when the lock file holds one version of PyO3 (then
/// that package's version is the answer) and as `"pyo3 X.Y.Z"` when it holds several.
pub fn pyo3_version(lock: &str, package: &str) -> Option<String> {
    let packages: Vec<&str> = lock.split("[[package]]").skip(1).collect();
    let field = |block: &str, key: &str| -> Option<String> {
        let prefix = format!("{key} = \"");
        block
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
            .map(|rest| rest.trim_end_matches('"').to_owned())
    };
    let own = packages
        .iter()
        .find(|block| field(block, "name").as_deref() == Some(package))?;
    let dependency = own
        .lines()
        .map(|line| line.trim().trim_end_matches(',').trim_matches('"'))
        .find(|dep| *dep == "pyo3" || dep.starts_with("pyo3 "))?;
    if let Some(version) = dependency.strip_prefix("pyo3 ") {
        return version.split_whitespace().next().map(str::to_owned);
    }
    packages
        .iter()
        .find(|block| field(block, "name").as_deref() == Some("pyo3"))
        .and_then(|block| field(block, "version"))
}

/// The version requirement of `pyo3` in the text of a `Cargo.toml`, without its operator
/// (`"=0.12.4"` gives `0.12.4`).
pub fn pyo3_requirement(manifest: &str) -> Option<String> {
    let line = manifest.lines().find(|line| {
        let line = line.trim_start();
        line.starts_with("pyo3 ") || line.starts_with("pyo3=")
    })?;
    let value = line.split_once('=')?.1.trim();
    let quoted = match value.strip_prefix('{') {
        Some(table) => table.split("version").nth(1)?.split_once('=')?.1,
        None => value,
    };
    let requirement = quoted.trim_start().strip_prefix('"')?.split('"').next()?;
    Some(
        requirement
            .trim_start_matches(['=', '^', '~', ' '])
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::{pyo3_requirement, pyo3_version};

    const ONE: &str = r#"
[[package]]
name = "pyo3"
version = "0.30.1"

[[package]]
name = "era"
version = "0.1.0"
dependencies = [
 "pyo3",
 "tokio",
]
"#;

    const TWO: &str = r#"
[[package]]
name = "old"
version = "0.1.0"
dependencies = [
 "pyo3 0.12.4",
]

[[package]]
name = "pyo3"
version = "0.12.4"

[[package]]
name = "pyo3"
version = "0.30.1"
"#;

    #[test]
    fn one_pyo3_in_the_lock() {
        assert_eq!(pyo3_version(ONE, "era").as_deref(), Some("0.30.1"));
        assert_eq!(pyo3_version(ONE, "missing"), None);
    }

    #[test]
    fn several_pyo3_in_the_lock() {
        assert_eq!(pyo3_version(TWO, "old").as_deref(), Some("0.12.4"));
    }

    #[test]
    fn requirement_of_the_manifest() {
        let pinned = "[dependencies]\npyo3 = { version = \"=0.12.4\", features = [] }\n";
        assert_eq!(pyo3_requirement(pinned).as_deref(), Some("0.12.4"));
        assert_eq!(
            pyo3_requirement("pyo3 = \"0.30.1\"\n").as_deref(),
            Some("0.30.1")
        );
        assert_eq!(pyo3_requirement("tokio = \"1\"\n"), None);
    }
}
