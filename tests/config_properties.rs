//! Property tests of the config parser: whatever an operator (or a tool
//! writing configs) puts in the file, `Config::parse` answers with a config
//! or an error naming the file and the key at fault; it never panics, and a
//! well-formed config keeps every project and process it was given.
//!
//! Run with: cargo test --test config_properties

use std::collections::BTreeSet;
use std::path::Path;

use bosun::config::{Config, ConfigError};
use proptest::prelude::*;

const PATH: &str = "/srv/bosun/bosun.toml";

/// A config that loads, with one key per table the cases below replace.
fn base(server: &str, jobs: &str, project: &str, process: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}

[jobs]
{jobs}

[[keys]]
name = "ci"
hash = "sha256:0bde5a1694eceb4a7db479353d30536acfbd1bb2be2e390916d98457e2a6414a"
projects = "*"
role = "admin"

[projects.shop]
dir = "shop"
{project}

[[projects.shop.processes]]
name = "web"
command = "node"
{process}
"#
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(PATH))
}

/// A TOML value of any kind, as it would be written after `key = `.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,12}".prop_map(|s| toml_string(&s)),
        "[0-9]{1,4}(ms|s|m|h|KiB|MiB|GiB|days)?".prop_map(|s| toml_string(&s)),
        Just("\"\"".to_string()),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..3).prop_map(|v| {
                let fields: Vec<String> = v.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The keys of each table, with where they go in `base`.
#[derive(Debug, Clone, Copy)]
enum Table {
    Server,
    Jobs,
    Project,
    Process,
}

fn key() -> impl Strategy<Value = (Table, &'static str)> {
    prop_oneof![
        prop::sample::select(vec![
            "max_body",
            "read_timeout",
            "max_wait",
            "max_concurrent_requests",
            "max_connections",
            "max_connections_per_address",
            "max_long_requests",
            "max_long_requests_per_key",
            "auth_fail_limit",
            "auth_fail_window",
            "shutdown_grace",
        ])
        .prop_map(|k| (Table::Server, k)),
        prop::sample::select(vec![
            "queue_depth",
            "keep",
            "max_bytes",
            "keep_for",
            "max_log"
        ])
        .prop_map(|k| (Table::Jobs, k)),
        prop::sample::select(vec!["key_hash", "unconfined", "merged_log", "actions"])
            .prop_map(|k| (Table::Project, k)),
        prop::sample::select(vec![
            "args",
            "cwd",
            "env",
            "instances",
            "autostart",
            "restart_at",
            "restart_ok",
            "stop_signal",
            "kill_timeout",
            "log_max_size",
            "log_keep",
            "ready",
            "max_memory",
            "network",
        ])
        .prop_map(|k| (Table::Process, k)),
    ]
}

impl Table {
    /// The dotted name of the table, as errors give it.
    fn prefix(self) -> &'static str {
        match self {
            Table::Server => "server.",
            Table::Jobs => "jobs.",
            Table::Project => "projects.shop",
            Table::Process => "projects.shop.processes[0].",
        }
    }
}

fn with(table: Table, line: &str) -> String {
    match table {
        Table::Server => base(line, "", "", ""),
        Table::Jobs => base("", line, "", ""),
        Table::Project => base("", "", line, ""),
        Table::Process => base("", "", "", line),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Arbitrary text is a config or an error that names the file.
    #[test]
    fn any_text_is_parsed_or_refused(text in "\\PC{0,200}|(\\[[a-z.]{0,20}\\]\n([a-z_]{1,12} = [\\PC]{0,20}\n){0,4}){0,4}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.to_string().starts_with(PATH), "{e}");
        }
    }

    /// Any value under a known key is taken, or refused by an error that
    /// names that key; never a panic, never an error about something else.
    #[test]
    fn a_value_of_any_kind_is_taken_or_refused_by_name((table, key) in key(), value in toml_value()) {
        let line = format!("{key} = {value}");
        match parse(&with(table, &line)) {
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with(PATH), "{message}");
                prop_assert!(message.contains(key), "`{line}` refused without naming `{key}`: {message}");
                // A value may be refused for what it is next to (a `max_log`
                // over `max_bytes`), so the key blamed is one of its table.
                if let ConfigError::Invalid { key: dotted, .. } = &e {
                    prop_assert!(dotted.starts_with(table.prefix()), "`{line}` blamed on `{dotted}`");
                }
            }
        }
    }

    /// A key bosun does not know is refused by name, in every table.
    #[test]
    fn an_unknown_key_is_refused_by_name(table in prop::sample::select(vec![Table::Server, Table::Jobs, Table::Project, Table::Process]), key in "x[a-z_]{1,12}", value in toml_value()) {
        let message = parse(&with(table, &format!("{key} = {value}")))
            .expect_err("an unknown key")
            .to_string();
        prop_assert!(message.contains(&key), "{message}");
    }

    /// Any number of well-named projects and processes load, each kept.
    #[test]
    fn well_formed_projects_are_all_kept(
        projects in prop::collection::btree_map("[a-z][a-z0-9_-]{0,15}", prop::collection::btree_set("[a-z][a-z0-9_-]{0,15}", 0..4), 1..6)
    ) {
        let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
        for (i, (project, processes)) in projects.iter().enumerate() {
            text.push_str(&format!("[projects.{project}]\ndir = \"projects/p{i}\"\n"));
            for process in processes {
                text.push_str(&format!(
                    "[[projects.{project}.processes]]\nname = \"{process}\"\ncommand = \"sleep\"\nargs = [\"1\"]\n"
                ));
            }
        }
        let config = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(config.projects.keys().collect::<BTreeSet<_>>(), projects.keys().collect());
        for (name, processes) in &projects {
            let got: BTreeSet<&str> = config.projects[name].processes.iter().map(|p| p.name.as_str()).collect();
            prop_assert_eq!(got, processes.iter().map(String::as_str).collect());
        }
    }
}

#[test]
fn the_base_config_loads_and_each_table_checks_its_values() {
    parse(&base("", "", "", "")).expect("the base of the properties loads");
    for (table, line, key) in [
        (
            Table::Server,
            "max_connections = 0",
            "server.max_connections",
        ),
        (Table::Jobs, "keep = 0", "jobs.keep"),
        (Table::Process, "instances = 300", "instances"),
    ] {
        match parse(&with(table, line)) {
            Err(ConfigError::Invalid { key: dotted, .. }) => {
                assert!(dotted.ends_with(key), "{dotted}")
            }
            other => panic!("`{line}` gave {other:?}"),
        }
    }
}
