//! Support for Vow's end-to-end tests and benchmarks: finding the repository
//! and building the guest components they run.
//!
//! The guests live in two cargo workspaces of their own, outside the main one:
//! `guest-examples/rust` (the SDK examples) and `tests/guests` (the test
//! harness and the benchmark baseline). [`guest`] builds both for
//! `wasm32-wasip2` into `target/guests` the first time a process asks for a
//! guest, and returns the path of the requested component:
//!
//! ```no_run
//! let wasm = vow_tests::guest("harness")?;
//! assert!(wasm.ends_with("target/guests/wasm32-wasip2/release/harness.wasm"));
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Building needs the `wasm32-wasip2` target: `rustup target add wasm32-wasip2`.
//!
//! The Python examples in `guest-examples/python` are built by that folder's
//! `build.sh` (componentize-py in a virtualenv at `.venv`, which needs
//! `python3` with `venv` and access to PyPI the first time); [`python_guest`]
//! runs it once per process and returns the path of the requested component:
//!
//! ```no_run
//! let wasm = vow_tests::python_guest("seed")?;
//! assert!(wasm.ends_with("target/guests/python/seed.wasm"));
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The target triple the guests are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// The guest workspaces, as paths of their manifests relative to
/// [`workspace_root`].
pub const GUEST_WORKSPACES: [&str; 2] =
    ["guest-examples/rust/Cargo.toml", "tests/guests/Cargo.toml"];

/// Environment variables of the outer build that must not reach the nested
/// cargo: they would redirect its output, change its flags or wrap its
/// compiler.
const CLEARED_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_INCREMENTAL",
    "CARGO_LLVM_COV",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "MAKEFLAGS",
    "MFLAGS",
];

/// Prefixes of environment variables that are cleared for the same reason,
/// such as `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`, `CARGO_PROFILE_RELEASE_*` and
/// the per-package variables cargo sets for the running test.
const CLEARED_PREFIXES: &[&str] = &[
    "CARGO_TARGET_",
    "CARGO_PROFILE_",
    "CARGO_PKG_",
    "CARGO_CFG_",
    "CARGO_BIN_",
    "CARGO_CRATE_",
    "__CARGO",
];

/// The root of the repository: the directory that holds the main workspace's
/// `Cargo.toml`, `wit/` and the guest workspaces.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Where the guest workspaces put their build output.
pub fn guest_target_dir() -> PathBuf {
    workspace_root().join("target").join("guests")
}

/// The path of the component built from the guest crate `name` (`harness`,
/// `floor`, `promises`, `approval`).
///
/// The first call in a process builds every guest workspace with
/// `cargo build --release --target wasm32-wasip2`; concurrent callers wait for
/// that build, later callers reuse its outcome, and cargo's own lock keeps
/// concurrent test processes from building at the same time. Fails if the
/// build fails (the error includes cargo's output) or if no component named
/// `name` was built.
pub fn guest(name: &str) -> anyhow::Result<PathBuf> {
    static BUILD: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(message) = BUILD.get_or_init(|| build_guests().map_err(|error| format!("{error:#}")))
    {
        bail!("{message}");
    }
    let path = guest_target_dir()
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "guest component {} was not built: is `{name}` a crate in one of {}? \
             Is the target installed (`rustup target add {GUEST_TARGET}`)?",
            path.display(),
            GUEST_WORKSPACES.join(", "),
        );
    }
    Ok(path)
}

/// Builds every guest workspace, one after the other.
fn build_guests() -> anyhow::Result<()> {
    let root = workspace_root();
    let target_dir = guest_target_dir();
    for manifest in GUEST_WORKSPACES {
        build_workspace(&root.join(manifest), &target_dir)?;
    }
    Ok(())
}

/// Runs `cargo build --release --target wasm32-wasip2` on one guest workspace.
fn build_workspace(manifest: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--release")
        .args(["--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .current_dir(manifest.parent().unwrap_or(manifest));
    for (key, _) in std::env::vars_os() {
        if is_cleared(&key) {
            command.env_remove(&key);
        }
    }
    let output = command.output().with_context(|| {
        format!(
            "could not run {} to build the guests in {}",
            Path::new(&cargo).display(),
            manifest.display()
        )
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains(GUEST_TARGET) {
            format!("\nhint: is the target installed? `rustup target add {GUEST_TARGET}`")
        } else {
            String::new()
        };
        bail!(
            "building the guests in {} failed ({}):\n{}{hint}",
            manifest.display(),
            output.status,
            stderr.trim_end(),
        );
    }
    Ok(())
}

/// The script that builds the Python guest examples, relative to
/// [`workspace_root`].
pub const PYTHON_BUILD_SCRIPT: &str = "guest-examples/python/build.sh";

/// Where [`python_guest`] components are built.
pub fn python_guest_dir() -> PathBuf {
    guest_target_dir().join("python")
}

/// The path of the component built from the Python example `name` (`seed`,
/// `self-complete`, `approval`), a folder of `guest-examples/python`.
///
/// The first call in a process runs [`PYTHON_BUILD_SCRIPT`], which builds
/// every example that is out of date (the first run also creates `.venv`
/// and installs componentize-py into it); later callers reuse its outcome,
/// and the script's own lock keeps concurrent processes apart. Fails with
/// the script's output if it fails, or if it built no component `name`.
pub fn python_guest(name: &str) -> anyhow::Result<PathBuf> {
    static BUILD: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(message) =
        BUILD.get_or_init(|| build_python_guests().map_err(|error| format!("{error:#}")))
    {
        bail!("{message}");
    }
    let path = python_guest_dir().join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "python guest {} was not built: is `{name}` a folder of guest-examples/python \
             with app.py and wit/{name}.wit?",
            path.display(),
        );
    }
    Ok(path)
}

/// Runs the Python build script with no stdin, as CI does.
fn build_python_guests() -> anyhow::Result<()> {
    let script = workspace_root().join(PYTHON_BUILD_SCRIPT);
    let output = Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .current_dir(workspace_root())
        .output()
        .with_context(|| format!("could not run bash {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "building the python guests with {} failed ({}):\n{}{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim_end(),
        );
    }
    Ok(())
}

/// Whether the environment variable `key` belongs to the outer build.
fn is_cleared(key: &OsStr) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    CLEARED_VARS.contains(&key)
        || CLEARED_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

/// The test PostgreSQL server's URL, `None` when the run skips PostgreSQL
/// on purpose (`VOW_SKIP_POSTGRES=1`), and an error saying how to provide
/// one when neither is set: PostgreSQL tests are never skipped silently.
pub fn postgres_server() -> anyhow::Result<Option<String>> {
    if std::env::var("VOW_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        // Said where the test's output goes: a skip is never silent.
        #[expect(
            clippy::print_stderr,
            reason = "the test harness shows a test's stderr"
        )]
        {
            eprintln!("VOW_SKIP_POSTGRES=1: skipping a PostgreSQL test");
        }
        return Ok(None);
    }
    match std::env::var("VOW_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ => bail!(
            "this test needs a PostgreSQL server: set VOW_TEST_DATABASE_URL=postgres://user@host:port/db \
             (a role that may create databases), run the tests through scripts/test.sh, which starts \
             one, or set VOW_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
        ),
    }
}

/// A new, empty database on the test server ([`postgres_server`]); its
/// URL, or `None` when PostgreSQL is skipped. Each test gets its own, so
/// tests never see each other's data.
pub fn fresh_postgres_database() -> anyhow::Result<Option<String>> {
    let Some(server) = postgres_server()? else {
        return Ok(None);
    };
    let name = format!("vow_test_{}", uuid::Uuid::new_v4().simple());
    execute(&server, &format!("CREATE DATABASE {name}")).context("creating a test database")?;
    let base = server
        .rsplit_once('/')
        .map(|(base, _)| base)
        .context("VOW_TEST_DATABASE_URL names no database")?;
    Ok(Some(format!("{base}/{name}")))
}

/// Ends every Vow writer session on the database at `url` (the
/// connections whose `application_name` starts with `vow writer`), as a
/// network cut or a database restart would; the pools' connections stay.
pub fn cut_vow_writers(url: &str) -> anyhow::Result<()> {
    execute(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE 'vow writer %'",
    )
    .context("ending the Vow writer sessions")
}

/// Runs `sql` on the database at `url`, on a thread and runtime of its
/// own: callers may be inside another runtime or none.
fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (owned, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || -> anyhow::Result<()> {
        let url = owned;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to {url}"))?;
            let driver = tokio::spawn(connection);
            client.batch_execute(&sql).await?;
            drop(client);
            let _ = driver.await;
            anyhow::Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a statement on {url} panicked"))?
}

/// The CPU model as `/proc/cpuinfo` names it, for benchmark reports.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_the_wit_and_the_guest_workspaces() {
        let root = workspace_root();
        assert!(root.join("wit").join("vow.wit").is_file());
        for manifest in GUEST_WORKSPACES {
            assert!(root.join(manifest).is_file(), "{manifest}");
        }
    }

    #[test]
    fn python_examples_link_the_repository_wit() -> anyhow::Result<()> {
        let root = workspace_root();
        let wit_deps = std::fs::canonicalize(root.join("wit").join("deps"))?;
        let mut examples = 0;
        for entry in std::fs::read_dir(root.join("guest-examples").join("python"))? {
            let dir = entry?.path();
            if !dir.join("app.py").is_file() {
                continue;
            }
            examples += 1;
            // One source of WIT: `deps` is a symlink, never a copy.
            let deps = dir.join("wit").join("deps");
            assert!(
                std::fs::symlink_metadata(&deps)?.file_type().is_symlink(),
                "{} is not a symlink",
                deps.display()
            );
            assert_eq!(
                std::fs::canonicalize(&deps)?,
                wit_deps,
                "{}",
                deps.display()
            );
        }
        assert!(examples >= 3, "found {examples} python examples");
        Ok(())
    }

    #[test]
    fn outer_build_settings_are_cleared() {
        for key in [
            "CARGO_TARGET_DIR",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
        ] {
            assert!(is_cleared(OsStr::new(key)), "{key}");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "PATH",
            "HOME",
        ] {
            assert!(!is_cleared(OsStr::new(key)), "{key}");
        }
    }
}
