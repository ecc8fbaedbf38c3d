//! `bosun import`: the way in from what an app already says about how it
//! runs. A Procfile (Heroku, Dokku, Foreman, Render) or a PM2 ecosystem
//! file is turned into the `[projects.<p>]` tables bosun runs, printed
//! for the operator to read and paste. Every setting is mapped to the
//! nearest bosun key; one with no counterpart becomes a comment saying
//! so, never a silent loss.

mod pm2;
mod procfile;

pub use pm2::pm2;
pub use procfile::procfile;

pub(crate) use crate::config::bosun_name as name_of;

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read (or, for `.config.js`, run).
    #[error("{0}")]
    Read(String),
    /// The file does not say what the format says it must.
    #[error("{file}: {message}")]
    Invalid {
        /// The file, as given.
        file: String,
        /// What is wrong, with a line number where there is one.
        message: String,
    },
}

/// The TOML being written: tables and keys, values quoted by `toml`.
#[derive(Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    pub(crate) fn key(&mut self, key: &str, value: impl Into<toml::Value>) {
        let value: toml::Value = value.into();
        self.line(format!("{key} = {value}"));
    }

    pub(crate) fn comment(&mut self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            self.line(format!("# {line}"));
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// `[projects.<project>]` with its dir.
pub(crate) fn project_head(w: &mut Writer, project: &str, dir: &str) {
    w.line(format!("[projects.{}]", name_of(project)));
    w.key("dir", dir);
}
