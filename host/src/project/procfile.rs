//! A project's `Procfile` (Heroku, Dokku, Piku, Foreman): `type: command`
//! lines. bosun reads it on the project's behalf, so as every such file:
//! beneath the project dir, without blocking, only a regular file, at most
//! [`MAX_PROCFILE`], and a problem names its line.

/// The largest Procfile bosun reads.
pub const MAX_PROCFILE: u64 = 64 << 10;

/// The most process types a Procfile may have (`procfile.max_types` may
/// allow fewer).
pub const MAX_TYPES: usize = 64;

/// One Procfile, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfile {
    /// The process types, in file order: name and command.
    pub processes: Vec<(String, String)>,
    /// The `release:` command, if any.
    pub release: Option<String>,
}

impl Procfile {
    /// Parse `text`; an error names the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut processes: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut release = None;
        for (i, line) in text.lines().enumerate() {
            let at = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, command)) = line.split_once(':') else {
                return Err(format!("line {at}: not `name: command`"));
            };
            let (name, command) = (name.trim(), command.trim());
            // The text is the tenant's, and may be a link to a secret:
            // only a name already checked is ever repeated back.
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "line {at}: not a process type (1-64 letters, digits, `_`, `-`)"
                ));
            }
            if command.is_empty() {
                return Err(format!("line {at}: `{name}` has no command"));
            }
            if name == "release" {
                if release.replace(command.to_string()).is_some() {
                    return Err(format!("line {at}: a second `release`"));
                }
                continue;
            }
            if !seen.insert(name) {
                return Err(format!("line {at}: a second `{name}`"));
            }
            if processes.len() == MAX_TYPES {
                return Err(format!("line {at}: more than {MAX_TYPES} process types"));
            }
            processes.push((name.to_string(), command.to_string()));
        }
        Ok(Self { processes, release })
    }

    /// The `PORT` of the `index`-th process type from `base`.
    pub fn port(base: u16, index: usize) -> Option<u16> {
        u16::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(100))
            .and_then(|step| base.checked_add(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_procfile_gives_types_ports_and_a_release_phase() {
        let text = "# comment\nweb: gunicorn app.wsgi --bind 0.0.0.0:$PORT\n\
                    worker: celery -A app worker\nrelease: python manage.py migrate\n";
        let parsed = Procfile::parse(text).expect("parses");
        assert_eq!(parsed.processes.len(), 2);
        assert_eq!(parsed.release.as_deref(), Some("python manage.py migrate"));
        assert_eq!(Procfile::port(5000, 1), Some(5100));
        for (bad, line) in [
            ("web gunicorn\n", 1),
            ("\nweb: a\nweb: b\n", 3),
            ("w b: x\n", 1),
            ("SECRET=hunter2 x: y\n", 1),
        ] {
            let e = Procfile::parse(bad).expect_err(bad);
            assert!(e.starts_with(&format!("line {line}:")), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let many: String = (0..=MAX_TYPES).map(|i| format!("t{i}: run\n")).collect();
        let e = Procfile::parse(&many).expect_err("too many");
        assert!(e.contains("more than 64 process types"), "{e}");
    }
}
