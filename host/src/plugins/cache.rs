//! Compiled components, cached on disk in the state dir.
//!
//! Compiling a component takes ~80 ms (release) to ~1 s (debug); loading a
//! compiled one takes well under a millisecond. But deserializing is `unsafe`:
//! wasmtime trusts the bytes to be its own output. So every file is
//! authenticated before it is used: each entry is `HMAC-SHA256(key, name ‖ code)`
//! followed by the code, with a random key that lives only in the state dir
//! (mode 0600). A file that bosun did not write (dropped in, truncated,
//! corrupted, or written by another host) fails the check and is compiled
//! afresh instead. The name carries the content hash and the engine's
//! compatibility hash (which covers the wasmtime version and codegen
//! settings), so an upgrade never loads stale code.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;
const MAC_LEN: usize = 32;
/// Bytes of a remembered refusal's reason read back.
const MAX_REASON: u64 = 4 << 10;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled from the `.wasm` bytes during this load.
    Compiled,
    /// Loaded from the authenticated on-disk cache.
    Cache,
}

/// The on-disk cache of compiled components.
pub(crate) struct ComponentCache {
    dir: PathBuf,
    refused: PathBuf,
    key: [u8; 32],
}

impl ComponentCache {
    /// Open (creating as needed) the cache under `state_dir/cache`.
    pub(crate) fn open(state_dir: &Path) -> Result<Self> {
        let root = state_dir.join("cache");
        let dir = root.join("components");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let refused = root.join("refused");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&refused)
            .with_context(|| format!("creating {}", refused.display()))?;
        let key = load_or_create_key(&root.join("key"))?;
        Ok(Self { dir, refused, key })
    }

    /// The compiled form of `wasm`, from the cache when a valid entry exists.
    pub(crate) fn load_or_compile(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
    ) -> Result<(Component, Origin)> {
        let name = entry_name(engine, wasm);
        let path = self.dir.join(&name);
        if let Some(code) = self.read_verified(&path, &name) {
            match deserialize(engine, &code) {
                Ok(component) => return Ok((component, Origin::Cache)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cached component unusable, recompiling: {e:#}")
                }
            }
        }
        let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
        if let Err(e) = self.write(&path, &name, &component) {
            tracing::warn!(path = %path.display(), "could not cache compiled component: {e:#}");
        }
        Ok((component, Origin::Compiled))
    }

    /// The compiled form of `wasm` if the cache holds a valid one; never
    /// compiles.
    pub(crate) fn cached(&self, engine: &wasmtime::Engine, wasm: &[u8]) -> Option<Component> {
        let name = entry_name(engine, wasm);
        let code = self.read_verified(&self.dir.join(&name), &name)?;
        deserialize(engine, &code).ok()
    }

    /// Compile `wasm` and store it, unless a valid entry is there already.
    /// Unlike [`ComponentCache::load_or_compile`], a failed write is an
    /// error: the compiling child's whole result is the entry.
    pub(crate) fn compile_into(&self, engine: &wasmtime::Engine, wasm: &[u8]) -> Result<()> {
        if self.cached(engine, wasm).is_some() {
            return Ok(());
        }
        let name = entry_name(engine, wasm);
        let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
        self.write(&self.dir.join(&name), &name, &component)
            .context("storing the compiled component")
    }

    /// Drop the entry of `wasm` (a team's component that compiled but was
    /// refused: its code would only take room).
    pub(crate) fn forget(&self, engine: &wasmtime::Engine, wasm: &[u8]) {
        let _ = fs::remove_file(self.dir.join(entry_name(engine, wasm)));
    }

    /// Why a team's `wasm` was refused before, if it was (see
    /// [`ComponentCache::refuse`]).
    pub(crate) fn refused(&self, wasm: &[u8]) -> Option<String> {
        use std::io::Read as _;
        let mut reason = String::new();
        fs::File::open(self.refused.join(hex::encode(Sha256::digest(wasm))))
            .ok()?
            .take(MAX_REASON)
            .read_to_string(&mut reason)
            .ok()?;
        Some(reason)
    }

    /// Remember that a team's `wasm` was refused and why, across restarts
    /// and the new binary of an upgrade: a component that takes all its
    /// budget to fail must not take it again at every start, every check
    /// and every job. Keyed by the bytes only, so a new wasmtime does not
    /// retry it either; deleting `cache/refused/` retries them all.
    pub(crate) fn refuse(&self, wasm: &[u8], reason: &str) {
        let name = hex::encode(Sha256::digest(wasm));
        let written = tempfile::NamedTempFile::new_in(&self.refused).and_then(|mut tmp| {
            tmp.write_all(reason.as_bytes())?;
            tmp.persist(self.refused.join(name)).map_err(|e| e.error)?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!("could not remember a refused component: {e}");
        }
    }

    fn mac(&self, name: &str, code: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(code);
        mac
    }

    fn read_verified(&self, path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut bytes = fs::read(path).ok()?;
        if bytes.len() < MAC_LEN {
            return None;
        }
        let code = bytes.split_off(MAC_LEN);
        match self.mac(name, &code).verify_slice(&bytes) {
            Ok(()) => Some(code),
            Err(_) => {
                tracing::warn!(path = %path.display(), "cached component failed authentication; recompiling");
                None
            }
        }
    }

    fn write(&self, path: &Path, name: &str, component: &Component) -> Result<()> {
        let code = component.serialize().map_err(anyhow::Error::from)?;
        let tag = self.mac(name, &code).finalize().into_bytes();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).context("creating a temp file")?;
        tmp.write_all(&tag)?;
        tmp.write_all(&code)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).context("renaming into place")?;
        Ok(())
    }
}

fn entry_name(engine: &wasmtime::Engine, wasm: &[u8]) -> String {
    let mut compat = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    // wasmtime's compatibility hash covers its own version and every codegen
    // setting of the engine, so it is the "wasmtime version" part of the key.
    format!(
        "{}-{:016x}.cwasm",
        hex::encode(Sha256::digest(wasm)),
        compat.finish()
    )
}

/// Deserialize authenticated code.
#[allow(unsafe_code)]
fn deserialize(engine: &wasmtime::Engine, code: &[u8]) -> Result<Component> {
    // SAFETY: `code` passed the HMAC check, so it is exactly what this host's
    // `Component::serialize` wrote with a key only this state dir holds; and
    // wasmtime itself rejects code from an incompatible engine or version.
    unsafe { Component::deserialize(engine, code) }.map_err(anyhow::Error::from)
}

/// The cache's HMAC key: read it, or create it atomically. The key is written
/// to a temp file (mode 0600) and linked into place without replacing, so two
/// processes starting at once agree on one complete key.
fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    match read_key(path) {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
        other => return other,
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| anyhow::anyhow!("no randomness for the cache key: {e}"))?;
    let dir = path.parent().context("the key path has a parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).context("creating a temp file")?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(key),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e.error).with_context(|| format!("creating {}", path.display())),
    }
}

fn read_key(path: &Path) -> Result<[u8; 32]> {
    let bytes = fs::read(path)?;
    let mode = fs::metadata(path)?.permissions().mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} must not be readable by others (mode {mode:o})",
        path.display()
    );
    bytes.try_into().map_err(|_| {
        anyhow::anyhow!(
            "{} is not a 32-byte key; delete it to make a new one",
            path.display()
        )
    })
}
