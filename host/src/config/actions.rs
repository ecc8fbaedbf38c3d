//! The `actions` of a project, in either of two spellings:
//!
//! ```toml
//! actions = ["status", "restart"]            # stock actions with default limits
//!
//! [projects.shop.actions.restart]            # or one table per action
//! timeout = "2m"
//! [projects.shop.actions.migrate]
//! path = "plugins/migrate.wasm"              # a custom plugin
//! memory = "64MiB"
//! [projects.shop.actions.report]
//! repo_path = ".bosun/report.wasm"           # kept in the project's repository
//! ```
//!
//! An action without `path` or `repo_path` is the stock plugin of that name;
//! TOML cannot hold both spellings under one key, so the list form is the
//! short way and the table form the full one. `path` is the operator's file
//! (relative to the config); `repo_path` is the team's, beneath the project
//! dir (the current release, in the release layout), compiled within the
//! upload budget and loaded again when a job changes it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use super::PluginSettings;
use super::places::check_inside;
use crate::stock;

/// A project's actions by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actions(pub BTreeMap<String, ActionConfig>);

/// One action of a project.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// A custom plugin's component file; absent means the stock plugin of the
    /// action's name.
    pub path: Option<PathBuf>,
    /// A component in the project's own repository, relative to its dir.
    pub repo_path: Option<PathBuf>,
    /// An upload (`allow_uploads`) may take this action's place.
    #[serde(default)]
    pub replaceable: bool,
    /// Wall-clock limit of a run; default `plugins.timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Memory cap of a run; default `plugins.memory`.
    pub memory: Option<ByteSize>,
}

impl ActionConfig {
    pub(super) fn validate(&self, name: &str, settings: &PluginSettings) -> Result<(), String> {
        if let Some(rel) = &self.repo_path {
            if self.path.is_some() {
                return Err("give `path` or `repo_path`, not both".into());
            }
            check_inside(rel).map_err(|m| format!("`repo_path`: {m}"))?;
        } else if self.path.is_none() && stock::bytes(name).is_none() {
            return Err(format!(
                "no stock action is called `{name}` (stock actions: {}); give `path` or `repo_path` for a custom plugin",
                stock::names().collect::<Vec<_>>().join(", ")
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err("`timeout` must be more than 0".into());
        }
        if let Some(memory) = self.memory
            && memory > settings.max_memory
        {
            return Err(format!(
                "`memory` {memory} is more than plugins.max_memory ({})",
                settings.max_memory
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct ActionsVisitor;

        impl<'de> Visitor<'de> for ActionsVisitor {
            type Value = Actions;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of stock action names, or a table of actions")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Actions, A::Error> {
                let mut map = BTreeMap::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if map.insert(name.clone(), ActionConfig::default()).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "action `{name}` is listed twice"
                        )));
                    }
                }
                Ok(Actions(map))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Actions, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((name, cfg)) = access.next_entry::<String, ActionConfig>()? {
                    map.insert(name, cfg);
                }
                Ok(Actions(map))
            }
        }

        de.deserialize_any(ActionsVisitor)
    }
}
