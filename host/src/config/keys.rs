//! `[[keys]]`: who may call the API, on which projects and actions.
//!
//! ```toml
//! [[keys]]
//! name = "ci"                      # recorded on every job it starts
//! hash = "sha256:9f86d0…"          # `bosun key new` prints a key and this line
//! projects = ["shop"]              # or "*"
//! actions = ["deploy", "status"]   # or "*"
//! role = "run"                     # read | run | admin
//! ```
//!
//! Only hashes live in the config: a leaked config file grants nothing. Keys
//! are 256-bit random strings, so a plain SHA-256 is enough; a slow password
//! hash would only slow every request down.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

/// A SHA-256 digest written as `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::str::FromStr for KeyHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hex_part = s
            .strip_prefix("sha256:")
            .ok_or_else(|| "must start with `sha256:` (run `bosun key new`)".to_string())?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| "must be `sha256:` and 64 hex digits".to_string())?;
        Ok(Self(out))
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de)?.parse().map_err(D::Error::custom)
    }
}

/// What a key may do, each role including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read projects, processes, jobs and logs.
    Read,
    /// Also run actions, and cancel the jobs it started.
    Run,
    /// Also cancel any job in its scope, and read `/metrics`.
    Admin,
}

/// A set of names, or every name (`"*"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every name.
    All,
    /// Only these.
    Only(BTreeSet<String>),
}

impl Scope {
    /// Whether `name` is in scope.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.contains(name),
        }
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Star(String),
            List(Vec<String>),
        }
        match Raw::deserialize(de)
            .map_err(|_| D::Error::custom("expected \"*\" or a list of names"))?
        {
            Raw::Star(s) if s == "*" => Ok(Self::All),
            Raw::Star(s) => Err(D::Error::custom(format!(
                "expected \"*\" or a list of names, found \"{s}\""
            ))),
            Raw::List(names) => Ok(Self::Only(names.into_iter().collect())),
        }
    }
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key's name, recorded as `requested_by` on its jobs.
    pub name: String,
    /// The key's SHA-256.
    pub hash: KeyHash,
    /// The projects it reaches.
    pub projects: Scope,
    /// The actions it may run. Default `"*"`.
    #[serde(default = "all")]
    pub actions: Scope,
    /// What it may do.
    pub role: Role,
}

fn all() -> Scope {
    Scope::All
}
