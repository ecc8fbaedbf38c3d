//! Declared parameters and the checked values a plugin's `run` receives.
//!
//! Params travel as strings (they come from URLs, JSON and the command line);
//! typed getters parse them at the point of use and name the parameter in
//! every error, so a caller sees `invalid: param \`timeout\`: …` rather than a
//! bare parse failure.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, invalid};

/// One parameter an action declares.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Whether callers must give it.
    pub required: bool,
    /// The value used when it is not given.
    pub default: Option<&'static str>,
}

impl Param {
    /// A parameter callers must give.
    pub const fn required(name: &'static str, summary: &'static str) -> Self {
        Self {
            name,
            summary,
            required: true,
            default: None,
        }
    }

    /// An optional parameter with a default value.
    pub const fn optional(
        name: &'static str,
        summary: &'static str,
        default: &'static str,
    ) -> Self {
        Self {
            name,
            summary,
            required: false,
            default: Some(default),
        }
    }

    /// An optional parameter with no default: absent means "not given".
    pub const fn maybe(name: &'static str, summary: &'static str) -> Self {
        Self {
            name,
            summary,
            required: false,
            default: None,
        }
    }
}

/// Parameter values, checked against the action's declaration.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Check `raw` against `declared`: no unknown or repeated names, every
    /// required one present; then fill in defaults.
    pub fn check(declared: &[Param], raw: Vec<(String, String)>) -> Result<Self, Error> {
        let mut values = BTreeMap::new();
        for (name, value) in raw {
            if !declared.iter().any(|p| p.name == name) {
                let known: Vec<&str> = declared.iter().map(|p| p.name).collect();
                return Err(invalid(format_args!(
                    "unknown param `{name}`; this action takes: {}",
                    if known.is_empty() {
                        "no params".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(invalid(format_args!("param `{name}` given more than once")));
            }
        }
        for p in declared {
            if values.contains_key(p.name) {
                continue;
            }
            match p.default {
                Some(default) => {
                    values.insert(p.name.to_string(), default.to_string());
                }
                None if p.required => {
                    return Err(invalid(format_args!("missing required param `{}`", p.name)));
                }
                None => {}
            }
        }
        Ok(Self { values })
    }

    /// The value, or `None` when an optional param without default was not given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of a required param or one with a default.
    pub fn str(&self, name: &str) -> Result<&str, Error> {
        self.get(name)
            .ok_or_else(|| invalid(format_args!("param `{name}` was not given")))
    }

    /// The value parsed as `T`, or `None` when not given.
    pub fn parse<T>(&self, name: &str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|e| invalid(format_args!("param `{name}`: {e}")))
            })
            .transpose()
    }

    /// A boolean: `true/false`, `yes/no`, `1/0`, `on/off`; given empty
    /// (`force=`) is `true`, as `?follow` is in the API; absent is `false`.
    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "yes" | "1" | "on" | "") => Ok(true),
            Some("false" | "no" | "0" | "off") => Ok(false),
            Some(other) => Err(invalid(format_args!(
                "param `{name}`: expected true or false, got `{other}`"
            ))),
        }
    }

    /// A human duration such as `30s`, `500ms` or `2m`, or `None` when not given.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, Error> {
        self.get(name)
            .map(|v| {
                humantime::parse_duration(v)
                    .map_err(|e| invalid(format_args!("param `{name}`: {e} (e.g. 30s, 500ms, 2m)")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[Param] = &[
        Param::required("ref", "What to deploy"),
        Param::optional("force", "Deploy over local changes", "false"),
        Param::maybe("note", "A note"),
    ];

    fn check(raw: &[(&str, &str)]) -> Result<Params, Error> {
        Params::check(
            DECLARED,
            raw.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_fill_in_and_an_empty_flag_is_on() {
        let params = check(&[("ref", "main")]).expect("valid");
        assert_eq!(params.get("force"), Some("false"));
        assert_eq!(params.get("note"), None);
        assert!(!params.flag("force").expect("a flag"));
        for on in ["", "1", "true", "yes", "on"] {
            let params = check(&[("ref", "main"), ("force", on)]).expect("valid");
            assert!(params.flag("force").expect("a flag"), "`{on}` is on");
        }
        let params = check(&[("ref", "main"), ("force", "maybe")]).expect("valid");
        assert!(matches!(params.flag("force"), Err(Error::Invalid(_))));
    }

    #[test]
    fn unknown_repeated_and_missing_names_are_invalid() {
        for raw in [
            &[("ref", "a"), ("colour", "red")][..],
            &[("ref", "a"), ("ref", "b")][..],
            &[("force", "true")][..],
        ] {
            assert!(matches!(check(raw), Err(Error::Invalid(_))), "{raw:?}");
        }
    }

    #[test]
    fn an_io_error_keeps_its_kind() {
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(matches!(
            Error::from(io(std::io::ErrorKind::NotFound)),
            Error::NotFound(_)
        ));
        assert!(matches!(
            Error::from(io(std::io::ErrorKind::PermissionDenied)),
            Error::Denied(_)
        ));
        assert!(matches!(
            Error::from(io(std::io::ErrorKind::Other)),
            Error::Failed(_)
        ));
    }
}
