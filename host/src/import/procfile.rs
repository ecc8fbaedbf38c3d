//! Procfiles: `name: command` lines, as Heroku, Dokku, Piku and Foreman
//! read them. Each command runs through `sh -c` (it may use `$PORT` and
//! other variables), inside the project's confinement. Process types get
//! `PORT` as Foreman gives it: the base port for the first, 100 more for
//! each next; `web` gets a readiness check on its port. `release` is not
//! a process but the release phase of a deploy.

use super::{ImportError, Writer, name_of, project_head};
use crate::project::Procfile;

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
    let mut names = std::collections::HashSet::new();
    if let Some((raw, _)) = parsed
        .processes
        .iter()
        .find(|(raw, _)| !names.insert(name_of(raw)))
    {
        return Err(invalid(format!(
            "`{raw}` is another type's name once made a bosun name (`{}`)",
            name_of(raw)
        )));
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
