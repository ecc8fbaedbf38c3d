//! Plugins loaded from a config file, as an operator writes it: the custom
//! example built from `plugins/examples/disk-usage`, loaded by path; broken
//! plugins reported per action without stopping the rest; config mistakes
//! reported with the file and key; `bosun check` and `bosun exec` run as
//! the binary.
//!
//! Run with: cargo test --test plugin_config

mod common;

use std::path::Path;
use std::process::Command;

use bosun::config::{Config, ConfigError};
use bosun::plugins::{ActionRegistry, Engine, EngineConfig, ProjectScope, Stream};
use common::{Log, guest_dir};
use serde_json::Value;
use tempfile::TempDir;

/// A config dir with a project `shop` and `text` as bosun.toml.
fn setup(text: &str) -> (TempDir, std::path::PathBuf) {
    let root = TempDir::new().expect("temp");
    let shop = root.path().join("shop");
    std::fs::create_dir_all(shop.join("public")).expect("mkdir");
    std::fs::write(shop.join("server.js"), "x".repeat(1000)).expect("write");
    std::fs::write(shop.join("public/logo.png"), vec![0u8; 5000]).expect("write");
    let path = root.path().join("bosun.toml");
    std::fs::write(&path, text).expect("write config");
    (root, path)
}

fn du_path() -> String {
    guest_dir().join("disk_usage.wasm").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_plugin_loaded_by_path_from_config_runs() {
    let (_root, path) = setup(&format!(
        "[projects.shop]\ndir = \"shop\"\n[projects.shop.actions.du]\npath = {:?}\nmemory = \"32MiB\"\ntimeout = \"20s\"\n",
        du_path()
    ));
    let config = Config::load(&path).expect("valid config");
    let engine = Engine::new(&EngineConfig::from_config(&config)).expect("engine");
    let registry = ActionRegistry::load(&engine, &config).await;
    assert_eq!(registry.errors().count(), 0);
    let du = registry
        .get("shop", "du")
        .expect("configured")
        .expect("loaded");
    assert_eq!(du.limits.memory, 32 << 20);
    assert_eq!(du.limits.timeout.as_secs(), 20);
    assert_eq!(du.plugin.meta().name, "disk-usage");

    let log = Log::default();
    let scope = ProjectScope::new("shop", &config.projects["shop"].dir);
    let mut req = common::request(scope, &[("top", "2")], &log);
    req.limits = du.limits;
    let out: Value =
        serde_json::from_str(&engine.run(&du.plugin, req).await.expect("runs")).expect("JSON");
    assert_eq!(out["total_bytes"], 6000);
    assert_eq!(out["largest"][0]["name"], "public");
    assert_eq!(out["largest"][0]["bytes"], 5000);
    assert_eq!(
        log.of(Stream::Stdout).last().map(String::as_str),
        Some("        6000  total (2 entries)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_plugins_are_reported_per_action_and_the_rest_load() {
    let (root, path) = setup("");
    std::fs::write(root.path().join("garbage.wasm"), b"not wasm at all").expect("write");
    std::fs::copy(
        guest_dir().join("fixture_wrong_export.wasm"),
        root.path().join("wrong.wasm"),
    )
    .expect("copy");
    std::fs::write(
        &path,
        "[projects.shop]\ndir = \"shop\"\nactions = [\"status\"]\n\
         [projects.web]\ndir = \"web\"\n\
         [projects.web.actions.garbage]\npath = \"garbage.wasm\"\n\
         [projects.web.actions.missing]\npath = \"nope.wasm\"\n\
         [projects.web.actions.wrong]\npath = \"wrong.wasm\"\n\
         [projects.web.actions.restart]\n",
    )
    .expect("write config");
    let config = Config::load(&path).expect("the config itself is valid");
    let engine = Engine::new(&EngineConfig::from_config(&config)).expect("engine");
    let registry = ActionRegistry::load(&engine, &config).await;
    let errors: Vec<String> = registry.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("plugin `web/garbage`: is not a WebAssembly file"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("plugin `web/missing`: cannot read "),
        "{}",
        errors[1]
    );
    assert!(errors[1].contains("nope.wasm"), "{}", errors[1]);
    assert!(
        errors[2].contains("does not export `bosun:plugin/action`"),
        "{}",
        errors[2]
    );
    assert!(registry.get("shop", "status").expect("configured").is_ok());
    assert!(registry.get("web", "restart").expect("configured").is_ok());
    assert!(registry.get("web", "deploy").is_none());
}

fn load_err(text: &str) -> String {
    let (_root, path) = setup(text);
    let err: ConfigError = Config::load(&path).expect_err("invalid config");
    err.to_string()
        .replace(&path.display().to_string(), "bosun.toml")
}

#[test]
fn config_mistakes_name_the_file_and_the_key() {
    let e = load_err("[projects.shop\ndir = \"shop\"\n");
    assert!(
        e.starts_with("bosun.toml: TOML parse error at line 1, column 15"),
        "{e}"
    );

    let e = load_err("[projects.shop]\ndir = \"shop\"\ntimout = \"5s\"\n");
    assert!(
        e.starts_with("bosun.toml: TOML parse error at line 3"),
        "{e}"
    );
    assert!(e.contains("unknown field `timout`"), "{e}");

    let e = load_err(
        "[projects.shop]\ndir = \"shop\"\nactions = [\"status\", \"deploy-everything\"]\n",
    );
    assert!(
        e.starts_with("bosun.toml:3: `projects.shop.actions.deploy-everything`: no stock action is called `deploy-everything`"),
        "{e}"
    );

    let e = load_err("[projects.Shop]\ndir = \"shop\"\n");
    assert!(
        e.starts_with("bosun.toml:1: `projects.Shop`: `Shop` is not a valid name"),
        "{e}"
    );

    let e = load_err(
        "[projects.shop]\ndir = \"shop\"\n[projects.shop.actions.status]\nmemory = \"2GiB\"\n",
    );
    assert!(
        e.contains(
            "`projects.shop.actions.status`: `memory` 2.0 GiB is more than plugins.max_memory"
        ),
        "{e}"
    );

    let e = load_err(
        "[projects.shop]\ndir = \"shop\"\n[projects.shop.actions.status]\ntimeout = \"soon\"\n",
    );
    assert!(e.contains("line 4") && e.contains("timeout"), "{e}");

    let e = load_err("[projects.shop]\ndir = \"shop\"\nactions = [\"status\", \"status\"]\n");
    assert!(e.contains("action `status` is listed twice"), "{e}");
}

fn bosun(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run bosun")
}

#[test]
fn the_binary_checks_configs_and_runs_actions() {
    let (root, path) = setup(&format!(
        "[projects.shop]\ndir = \"shop\"\n[projects.shop.actions.status]\n[projects.shop.actions.du]\npath = {:?}\n",
        du_path()
    ));
    let out = bosun(&["check"], &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.ends_with(": ok (1 projects, 2 actions)\n"),
        "{stdout}"
    );
    // What the project's confinement will be on this host (root, Landlock).
    assert!(
        stdout.starts_with("shop: as bosun-shop (uid ") && stdout.contains("landlock "),
        "{stdout}"
    );

    let out = bosun(&["exec", "shop", "du", "top=1"], &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON result on stdout");
    assert_eq!(result["total_bytes"], 6000);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("6000  total"),
        "the log goes to stderr"
    );

    let out = bosun(&["exec", "shop", "du", "top=0"], &path);
    assert_eq!(out.status.code(), Some(1), "a plugin error exits 1");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("error: plugin_error: invalid: param `top` must be at least 1")
    );

    std::fs::write(root.path().join("broken.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(
        &path,
        "[projects.shop]\ndir = \"shop\"\n[projects.shop.actions.x]\npath = \"broken.wasm\"\n",
    )
    .expect("write");
    // exec loads only the action it runs: another's broken plugin is not
    // compiled, and not reported.
    std::fs::write(
        root.path().join("both.toml"),
        "[projects.shop]\ndir = \"shop\"\n[projects.shop.actions.status]\n[projects.shop.actions.x]\npath = \"broken.wasm\"\n",
    )
    .expect("write");
    let out = bosun(&["exec", "shop", "status"], &root.path().join("both.toml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("shop/x"),
        "exec loaded another action: {stderr}"
    );

    let out = bosun(&["check"], &path);
    assert_eq!(out.status.code(), Some(7), "an invalid plugin exits 7");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin `shop/x`: is a core WebAssembly module, not a component"),
        "{stderr}"
    );

    std::fs::write(&path, "[projects.shop\n").expect("write");
    assert_eq!(
        bosun(&["check"], &path).status.code(),
        Some(2),
        "a malformed config exits 2"
    );
}
