//! `bosun key new`: a fresh API key and the `[[keys]]` entry holding its hash.
//!
//! The key is printed once and never stored: the config keeps only its
//! SHA-256, so a leaked config grants nothing. The `bsk_` prefix lets secret
//! scanners recognise a bosun key that ended up somewhere it should not.

use sha2::{Digest, Sha256};

use super::ExitCode;

/// Print a new key and its config snippet.
pub fn key_new(name: &str) -> ExitCode {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        eprintln!("error: no randomness from the OS: {e}");
        return ExitCode::HostError;
    }
    let key = format!("bsk_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    println!("# The key; give it to the caller. It is shown only this once:");
    println!("#   {key}");
    println!("# Add this to the config (narrow `projects`, `actions` and `role` as needed):");
    println!("[[keys]]");
    println!("name = {}", toml_string(name));
    println!("hash = \"sha256:{hash}\"");
    println!("projects = \"*\"");
    println!("actions = \"*\"");
    println!("role = \"run\"");
    ExitCode::Ok
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
