//! Uploaded actions, kept in the state dir so they survive restarts.
//!
//! ```text
//! state_dir/uploads/blobs/<sha256>.wasm           each component once
//! state_dir/uploads/actions/<project>/<action>.json   its versions
//! ```
//!
//! Components are content-addressed: a version is a line in the action's
//! history naming a blob, so a rollback re-points the history and copies
//! nothing, and the same component uploaded to ten projects is stored
//! once. Every file is written to a temp file and renamed into place: a
//! crash leaves the old history or the new, never half of one. A history
//! keeps its newest [`KEEP_VERSIONS`]; blobs no history names are deleted.
//! Writes are serialised by the caller (one upload at a time, see
//! `catalog`).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Versions kept per action; older ones are forgotten (no rollback to them).
pub const KEEP_VERSIONS: usize = 10;

/// Uploaded actions one project may have: with [`KEEP_VERSIONS`] and
/// `max_plugin_size`, what one tenant can put in the shared state dir is
/// bounded (32 × 10 × 32 MiB at most, far less for real plugins, which
/// share their blobs between versions that did not change).
pub const MAX_ACTIONS: usize = 32;

/// The file naming the project dir a project's uploads were made for.
const OWNER: &str = ".dir";

/// One uploaded version of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// 1 for the first upload, then one more for each.
    pub version: u32,
    /// The SHA-256 of the component, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was uploaded, in ms since the Unix epoch.
    pub uploaded_at: u64,
    /// The name of the key that uploaded it.
    pub uploaded_by: String,
    /// Its `describe()` summary at upload.
    pub summary: String,
}

/// An action's versions, oldest first, and the one in service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The kept versions, oldest first.
    pub versions: Vec<Version>,
    /// The version in service.
    pub current: u32,
}

impl History {
    /// The version in service.
    pub fn current(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == self.current)
    }
}

/// The upload store of one state dir.
#[derive(Debug)]
pub struct UploadStore {
    blobs: PathBuf,
    actions: PathBuf,
}

impl UploadStore {
    /// Open (creating as needed) `state_dir/uploads`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let root = state_dir.join("uploads");
        let store = Self {
            blobs: root.join("blobs"),
            actions: root.join("actions"),
        };
        for dir in [&root, &store.blobs, &store.actions] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(store)
    }

    /// Where `project`'s `action` keeps its history. Names are checked
    /// here too, whoever the caller: a name is a path component.
    fn history_path(&self, project: &str, action: &str) -> Result<PathBuf> {
        for name in [project, action] {
            crate::config::check_action_name(name).map_err(anyhow::Error::msg)?;
        }
        Ok(self.actions.join(project).join(format!("{action}.json")))
    }

    /// The versions of `project`'s uploaded `action`, if it has any.
    pub fn history(&self, project: &str, action: &str) -> Result<Option<History>> {
        let path = self.history_path(project, action)?;
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Every uploaded action of `project`, by name.
    pub fn project(&self, project: &str) -> Result<Vec<(String, History)>> {
        crate::config::check_action_name(project).map_err(anyhow::Error::msg)?;
        let dir = self.actions.join(project);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(action) = name.strip_suffix(".json")
                && crate::config::check_action_name(action).is_ok()
                && let Some(history) = self.history(project, action)?
            {
                found.push((action.to_string(), history));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Whether `project`'s uploads were made for the project at `dir`: a
    /// project removed from the config and another later given its name
    /// (another tenant's, elsewhere) must not run the first one's uploads.
    pub fn owned_by(&self, project: &str, dir: &Path) -> Result<bool> {
        let owner = self.actions.join(project).join(OWNER);
        match fs::read(&owner) {
            Ok(bytes) => Ok(bytes == dir.as_os_str().as_encoded_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(self.project(project)?.is_empty())
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", owner.display())),
        }
    }

    /// Make `project`'s uploads the project at `dir`'s: those of a previous
    /// project of that name (at another dir) are forgotten.
    pub fn claim(&self, project: &str, dir: &Path) -> Result<()> {
        if self.owned_by(project, dir)? {
            let owner = self.actions.join(project).join(OWNER);
            if !owner.exists() {
                self.save_owner(project, dir)?;
            }
            return Ok(());
        }
        for (action, _) in self.project(project)? {
            self.remove(project, &action)?;
        }
        self.save_owner(project, dir)
    }

    fn save_owner(&self, project: &str, dir: &Path) -> Result<()> {
        let home = self.actions.join(project);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .with_context(|| format!("creating {}", home.display()))?;
        write_atomic(&home.join(OWNER), dir.as_os_str().as_encoded_bytes())
    }

    /// The component of `version`, checked against its hash.
    pub fn component(&self, version: &Version) -> Result<Vec<u8>> {
        let path = self.blobs.join(format!("{}.wasm", version.sha256));
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        anyhow::ensure!(
            hex::encode(Sha256::digest(&bytes)) == version.sha256,
            "{} does not match its hash",
            path.display()
        );
        Ok(bytes)
    }

    /// Add `wasm` as the newest version of `project`'s `action`, in
    /// service. Returns it.
    pub fn add(
        &self,
        project: &str,
        action: &str,
        wasm: &[u8],
        uploaded_by: &str,
        summary: &str,
    ) -> Result<Version> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let blob = self.blobs.join(format!("{sha256}.wasm"));
        if !blob.exists() {
            write_atomic(&blob, wasm)?;
        }
        let mut history = self.history(project, action)?.unwrap_or_default();
        let version = Version {
            version: history
                .versions
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(0)
                + 1,
            sha256,
            size: wasm.len() as u64,
            uploaded_at: now_ms(),
            uploaded_by: uploaded_by.to_string(),
            summary: summary.to_string(),
        };
        history.versions.push(version.clone());
        history.current = version.version;
        let excess = history.versions.len().saturating_sub(KEEP_VERSIONS);
        history.versions.drain(..excess);
        self.save(project, action, &history)?;
        if excess > 0 {
            self.collect_garbage();
        }
        Ok(version)
    }

    /// Put `version` of `project`'s `action` back in service. `None` when
    /// the action has no such version kept.
    pub fn set_current(
        &self,
        project: &str,
        action: &str,
        version: u32,
    ) -> Result<Option<Version>> {
        let Some(mut history) = self.history(project, action)? else {
            return Ok(None);
        };
        let Some(found) = history
            .versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
        else {
            return Ok(None);
        };
        history.current = version;
        self.save(project, action, &history)?;
        Ok(Some(found))
    }

    /// Forget `project`'s uploaded `action` and every version of it.
    /// Returns whether it had any.
    pub fn remove(&self, project: &str, action: &str) -> Result<bool> {
        let path = self.history_path(project, action)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                self.collect_garbage();
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    fn save(&self, project: &str, action: &str, history: &History) -> Result<()> {
        let path = self.history_path(project, action)?;
        let dir = path.parent().context("a history has a dir")?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&path, &serde_json::to_vec_pretty(history)?)
    }

    /// Delete the blobs that no history names. Best effort: a blob left
    /// behind costs disk, not correctness.
    fn collect_garbage(&self) {
        let mut named = std::collections::HashSet::new();
        let projects = fs::read_dir(&self.actions).into_iter().flatten().flatten();
        for project in projects {
            let project = project.file_name().to_string_lossy().into_owned();
            for (_, history) in self.project(&project).unwrap_or_default() {
                named.extend(history.versions.into_iter().map(|v| v.sha256));
            }
        }
        for blob in fs::read_dir(&self.blobs).into_iter().flatten().flatten() {
            let name = blob.file_name().to_string_lossy().into_owned();
            let sha = name.strip_suffix(".wasm").unwrap_or(&name);
            if !named.contains(sha) {
                let _ = fs::remove_file(blob.path());
            }
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a stored file has a dir")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).context("creating a temp file")?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_roll_over_and_unnamed_blobs_go() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = UploadStore::open(dir.path()).expect("store");
        for i in 0..=KEEP_VERSIONS {
            store
                .add("shop", "migrate", format!("v{i}").as_bytes(), "ci", "m")
                .expect("added");
        }
        let history = store
            .history("shop", "migrate")
            .expect("read")
            .expect("some");
        assert_eq!(history.versions.len(), KEEP_VERSIONS);
        assert_eq!(history.versions[0].version, 2, "the first is forgotten");
        assert_eq!(history.current, KEEP_VERSIONS as u32 + 1);
        let first = hex::encode(Sha256::digest(b"v0"));
        assert!(
            !dir.path()
                .join(format!("uploads/blobs/{first}.wasm"))
                .exists()
        );

        let back = store
            .set_current("shop", "migrate", 3)
            .expect("set")
            .expect("kept");
        assert_eq!(store.component(&back).expect("blob"), b"v2");
        assert_eq!(store.set_current("shop", "migrate", 1).expect("set"), None);

        assert!(store.remove("shop", "migrate").expect("removed"));
        assert!(!store.remove("shop", "migrate").expect("nothing"));
        assert_eq!(
            fs::read_dir(dir.path().join("uploads/blobs"))
                .expect("ls")
                .count(),
            0
        );
    }

    #[test]
    fn another_project_of_the_same_name_does_not_inherit_uploads() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = UploadStore::open(dir.path()).expect("store");
        let (first, second) = (Path::new("/srv/a/shop"), Path::new("/srv/b/shop"));
        store.claim("shop", first).expect("claimed");
        store
            .add("shop", "migrate", b"v1", "ci", "m")
            .expect("added");
        assert!(store.owned_by("shop", first).expect("read"));
        assert!(!store.owned_by("shop", second).expect("read"));
        store.claim("shop", second).expect("claimed anew");
        assert_eq!(store.history("shop", "migrate").expect("read"), None);
        assert!(store.owned_by("shop", second).expect("read"));
        assert!(
            store.history("../x", "migrate").is_err(),
            "a name is checked"
        );
    }
}
