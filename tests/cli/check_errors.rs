//! `bosun check` on broken configs: each `tests/ui/<case>.toml` must fail
//! with exactly the text in `tests/ui/<case>.err`, naming the file, the line
//! and the key, so error messages are part of the contract.
//!
//! BOSUN_BLESS=1 rewrites the .err files from the current output.

use std::path::Path;
use std::process::Command;

#[test]
fn every_broken_config_gets_its_exact_error() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    let bless = std::env::var_os("BOSUN_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&ui)
        .expect("tests/ui")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the cases are there");
    let mut failures = Vec::new();
    for case in &cases {
        // Checked in a temp dir: `check` creates the state dir beside the config.
        let dir = tempfile::TempDir::new().expect("temp");
        let name = case.file_name().expect("name");
        std::fs::copy(case, dir.path().join(name)).expect("copy");
        std::fs::create_dir(dir.path().join("shop")).expect("project dir");
        let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .arg("check")
            .arg("--config")
            .arg(name)
            .current_dir(dir.path())
            .env("BOSUN_LOG", "off")
            .output()
            .expect("run bosun check");
        assert!(!out.status.success(), "{} passed the check", case.display());
        let got = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected_path = case.with_extension("err");
        if bless {
            std::fs::write(&expected_path, &got).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
