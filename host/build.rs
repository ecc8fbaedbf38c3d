//! Builds the guest workspace `plugins/` for wasm32-wasip2 and embeds the stock
//! actions, so a plain `cargo build` / `cargo test` on a fresh clone is enough.
//!
//! - The nested cargo uses a target dir of its own (`target/wasm-guests`): sharing
//!   the outer one deadlocks on cargo's file lock in release builds.
//! - RUSTFLAGS and wrappers meant for the host (coverage, clippy) are stripped:
//!   they are for x86_64 and would break or slow the guest build.
//! - `RUSTUP_AUTO_INSTALL=0` on our machines means the toolchain file does not
//!   install the target, so this installs it once with rustup, or stops with the
//!   exact command to run when rustup is not there.
//!
//! Every built guest's path is exported as `BOSUN_GUEST_DIR` for tests and
//! benches; only `plugins/stock/*` is embedded in the binary.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The guest sources only: not `plugins/target`, should someone build there.
    for input in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "sdk",
        "stock",
        "examples",
        "fixtures",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(input).display());
    }
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    ensure_target(&root);

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-guests");
    build_guests(&plugins, &target_dir);

    let built = target_dir.join(TARGET).join("release");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let guests = out_dir.join("guests");
    fs::create_dir_all(&guests).expect("create OUT_DIR/guests");
    for entry in fs::read_dir(&built).expect("guest build output") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            // Copy, so a concurrent guest build cannot change a file mid-embed.
            fs::copy(&path, guests.join(path.file_name().expect("file name"))).expect("copy guest");
        }
    }
    println!("cargo:rustc-env=BOSUN_GUEST_DIR={}", guests.display());
    write_stock_table(
        &plugins.join("stock"),
        &guests,
        &out_dir.join("stock_plugins.rs"),
    );
}

/// Make sure the wasm32-wasip2 standard library is installed for this rustc.
fn ensure_target(root: &Path) {
    if target_installed() {
        return;
    }
    let has_rustup = Command::new("rustup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_rustup {
        println!(
            "cargo:warning=installing the {TARGET} target with `rustup target add {TARGET}` (one time)"
        );
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .current_dir(root)
            .status();
        if status.is_ok_and(|s| s.success()) && target_installed() {
            return;
        }
    }
    panic!(
        "the {TARGET} target is not installed for this toolchain and could not be installed here.\n\
         Run this in the repository root, then build again:\n\n    rustup target add {TARGET}\n"
    );
}

fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}

fn build_guests(plugins: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the guest plugins");
    assert!(
        status.success(),
        "building plugins/ for {TARGET} failed; see the errors above"
    );
}

/// `STOCK_PLUGINS`: `(action name, component bytes)` for every `plugins/stock/<name>`.
fn write_stock_table(stock: &Path, guests: &Path, out: &Path) {
    let mut names: Vec<String> = fs::read_dir(stock)
        .expect("plugins/stock")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut src =
        String::from("/// The stock actions, embedded at build time: `(name, component bytes)`.\n");
    src.push_str("pub const STOCK_PLUGINS: &[(&str, &[u8])] = &[\n");
    for name in names {
        let wasm = guests.join(format!("bosun_action_{}.wasm", name.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "stock plugin `{name}` did not produce {}",
            wasm.display()
        );
        writeln!(
            src,
            "    ({name:?}, include_bytes!({:?})),",
            wasm.display().to_string()
        )
        .expect("write to String");
    }
    src.push_str("];\n");
    fs::write(out, src).expect("write stock_plugins.rs");
}
