//! Procfiles: `name: command` lines, as Heroku, Dokku, Piku and Foreman
//! read them. Each command runs through `sh -c` (it may use `$PORT` and
//! other variables), inside the project's confinement. Process types get
//! `PORT` as Foreman gives it: the base port for the first, 100 more for
//! each next; `web` gets a readiness check on its port. `release` is not
//! a process but the release phase of a deploy.

use super::{ImportError, Writer, name_of, project_head};

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
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "line {at}: `{name}` is not a process type (letters, digits, `_`, `-`)"
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
            let bosun_name = name_of(name);
            if processes.iter().any(|(n, _)| name_of(n) == bosun_name) {
                return Err(format!("line {at}: a second `{name}`"));
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

/// The bosun tables for the Procfile `text` (read from `file`), as project
/// `project` in `dir`, ports from `base`.
pub fn procfile(
    text: &str,
    file: &str,
    project: &str,
    dir: &str,
    base: u16,
) -> Result<String, ImportError> {
    let invalid = |message: String| ImportError::Invalid {
        file: file.to_string(),
        message,
    };
    let parsed = Procfile::parse(text).map_err(invalid)?;
    if parsed.processes.is_empty() {
        return Err(invalid("no process types".into()));
    }
    let mut w = Writer::default();
    w.comment(format!(
        "From {file}: each process type runs through `sh -c`, with PORT as Foreman gives it."
    ));
    project_head(&mut w, project, dir);
    let p = name_of(project);
    if let Some(release) = &parsed.release {
        w.line("");
        w.line(format!("[projects.{p}.commands]"));
        w.key("allow", vec!["sh"]);
        w.line(format!("[projects.{p}.deploy]"));
        w.comment("The Procfile's `release:` runs after the build, before the restart.");
        w.key(
            "release",
            toml::Value::Array(vec![toml::Value::Array(vec![
                "sh".into(),
                "-c".into(),
                release.as_str().into(),
            ])]),
        );
    }
    for (i, (name, command)) in parsed.processes.iter().enumerate() {
        let port = Procfile::port(base, i)
            .ok_or_else(|| invalid(format!("no port for `{name}` above {base}")))?;
        w.line("");
        w.line(format!("[[projects.{p}.processes]]"));
        w.key("name", name_of(name));
        w.key("command", "sh");
        w.key("args", vec!["-c", command.as_str()]);
        let mut env = toml::map::Map::new();
        env.insert("PORT".into(), port.to_string().into());
        w.key("env", toml::Value::Table(env));
        if name == "web" {
            let mut ready = toml::map::Map::new();
            ready.insert("port".into(), i64::from(port).into());
            w.key("ready", toml::Value::Table(ready));
        }
    }
    Ok(w.finish())
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
        ] {
            let e = Procfile::parse(bad).expect_err(bad);
            assert!(e.starts_with(&format!("line {line}:")), "{e}");
        }
    }
}
