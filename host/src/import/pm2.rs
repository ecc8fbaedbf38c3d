//! PM2 ecosystem files (`ecosystem.config.js`, `.json`, `.yaml`): each app
//! becomes a process of one project. A `.config.js` is a program, so it is
//! read by running `node` on it (only when asked, by the operator, on a
//! file they chose); without node it is refused, saying so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long node may take to evaluate a `.config.js`.
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

use serde_json::Value;

use super::{ImportError, Writer, name_of, project_head};

/// The bosun tables for the PM2 ecosystem file at `path`, as project
/// `project` in `dir`.
pub fn pm2(path: &Path, project: &str, dir: &str, run_node: bool) -> Result<String, ImportError> {
    let file = path.display().to_string();
    let invalid = |message: String| ImportError::Invalid {
        file: file.clone(),
        message,
    };
    let doc = read(path, run_node)?;
    let apps = match &doc {
        Value::Array(apps) => apps.clone(),
        Value::Object(o) => match o.get("apps") {
            Some(Value::Array(apps)) => apps.clone(),
            Some(app @ Value::Object(_)) => vec![app.clone()],
            _ => return Err(invalid("no `apps` list".into())),
        },
        _ => return Err(invalid("not an ecosystem (an object with `apps`)".into())),
    };
    if apps.is_empty() {
        return Err(invalid("`apps` is empty".into()));
    }
    let mut w = Writer::default();
    w.comment(format!("From the PM2 ecosystem file {file}."));
    project_head(&mut w, project, dir);
    let p = name_of(project);
    let mut names = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let Some(app) = app.as_object() else {
            return Err(invalid(format!("apps[{i}] is not an object")));
        };
        let raw = app.get("name").and_then(Value::as_str).unwrap_or("app");
        let mut name = name_of(raw);
        if names.contains(&name) {
            name = format!("{name}-{i}");
        }
        names.push(name.clone());
        w.line("");
        if name != raw {
            w.comment(format!("PM2 name `{raw}`"));
        }
        w.line(format!("[[projects.{p}.processes]]"));
        w.key("name", name);
        app_keys(&mut w, app, dir).map_err(|m| invalid(format!("apps[{i}]: {m}")))?;
    }
    Ok(w.finish())
}

/// The file as JSON, whatever it was written in.
fn read(path: &Path, run_node_ok: bool) -> Result<Value, ImportError> {
    let file = path.display().to_string();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(".js") || name.ends_with(".cjs") || name.ends_with(".mjs") {
        if !run_node_ok {
            return Err(ImportError::Read(format!(
                "{file} is JavaScript: reading it runs it (and whatever it requires) with node, \
                 as you; pass --run-node to do that, or give the ecosystem as .json or .yaml"
            )));
        }
        return run_node(path);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ImportError::Read(format!("cannot read {file}: {e}")))?;
    let parsed = if name.ends_with(".yaml") || name.ends_with(".yml") {
        serde_saphyr::from_str::<Value>(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| ImportError::Invalid { file, message })
}

/// What `module.exports` of a `.config.js` is, by asking node.
fn run_node(path: &Path) -> Result<Value, ImportError> {
    let file = path.display().to_string();
    let absolute = std::path::absolute(path)
        .map_err(|e| ImportError::Read(format!("cannot read {file}: {e}")))?;
    const PRINT: &str = "const m = require(process.argv[1]); \
                         Promise.resolve(m && m.default || m).then(v => process.stdout.write(JSON.stringify(v)))";
    let mut child = Command::new("node")
        .args(["-e", PRINT])
        .arg(&absolute)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ImportError::Read(match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "{file} is JavaScript, read by running node on it, and node is not on PATH; \
                     install Node.js, or give the ecosystem as .json or .yaml"
                ),
                _ => format!("cannot run node on {file}: {e}"),
            })
        })?;
    // A config file that never ends (or prints without end) is cut off.
    let deadline = std::time::Instant::now() + NODE_TIMEOUT;
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ImportError::Invalid {
                file,
                message: format!("node did not finish within {NODE_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ImportError::Read(format!("reading node's output: {e}")))?;
    if !out.status.success() {
        return Err(ImportError::Invalid {
            file,
            message: format!(
                "node failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| ImportError::Invalid {
        file,
        message: format!("node printed no JSON: {e}"),
    })
}

/// One app's settings as process keys, and comments for those with none.
/// (`dir`: the project dir, which PM2's relative log paths are under.)
fn app_keys(w: &mut Writer, app: &serde_json::Map<String, Value>, dir: &str) -> Result<(), String> {
    let str_of = |key: &str| app.get(key).and_then(Value::as_str);
    let script = str_of("script").ok_or("no `script`")?;
    let mut args = words(app.get("interpreter_args").or(app.get("node_args")));
    let interpreter = str_of("interpreter")
        .filter(|i| *i != "none")
        .map(str::to_string);
    let interpreter = interpreter.or_else(|| {
        let ext = Path::new(script).extension()?.to_str()?;
        match ext {
            "js" | "cjs" | "mjs" => Some("node".to_string()),
            "py" => Some("python3".to_string()),
            "sh" => Some("sh".to_string()),
            _ => None,
        }
    });
    let command = match interpreter {
        Some(interpreter) => {
            args.push(script.to_string());
            interpreter
        }
        None => script.to_string(),
    };
    args.extend(words(app.get("args")));
    w.key("command", command);
    if !args.is_empty() {
        w.key("args", args);
    }
    if let Some(cwd) = str_of("cwd") {
        if Path::new(cwd).is_relative() && !cwd.split('/').any(|c| c == "..") {
            w.key("cwd", cwd);
        } else {
            w.comment(format!(
                "PM2 `cwd = {cwd}`: a bosun cwd is relative to the project dir; set `dir` to it"
            ));
        }
    }
    let instances = match app.get("instances") {
        None => 1,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(1),
        Some(Value::String(s)) if s == "max" => 0,
        Some(Value::String(s)) => s.parse().unwrap_or(1),
        Some(other) => return Err(format!("`instances` is {other}")),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    let instances = match instances {
        n if n > 0 => n,
        n => (cpus + n).max(1),
    };
    if instances > 1 {
        w.key("instances", instances);
    }
    if str_of("exec_mode").is_some_and(|m| m.starts_with("cluster")) {
        w.comment(
            "PM2 cluster mode shared one port among the instances. In bosun, give the port\n\
             to bosun (`sockets = [\"127.0.0.1:<port>\"]`) and have the app take fd 3\n\
             (Node: `server.listen({ fd: 3 })`), or listen with SO_REUSEPORT.",
        );
    }
    if let Some(Value::Object(env)) = app.get("env") {
        let mut table = toml::map::Map::new();
        for (k, v) in env {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            table.insert(k.clone(), v.into());
        }
        w.key("env", toml::Value::Table(table));
    }
    for (key, _) in app.iter().filter(|(k, _)| k.starts_with("env_")) {
        w.comment(format!(
            "PM2 `{key}` (an environment for `--env`): bosun has one env per process"
        ));
    }
    if app.get("autorestart") == Some(&Value::Bool(false)) {
        w.key("restart_at", Vec::<String>::new());
    } else if let Some(ms) = app.get("restart_delay").and_then(Value::as_u64) {
        // One `0ms` would mean "never restart" to bosun.
        match ms {
            0 => w.comment("PM2 `restart_delay = 0`: bosun's default schedule starts at once"),
            ms => w.key("restart_at", vec![format!("{ms}ms")]),
        }
    }
    if let Some(port) = app.get("port") {
        w.comment(format!(
            "PM2 `port = {port}` (its PORT): put PORT in `env`, or give the port to bosun with `sockets`"
        ));
    }
    if let Some(ms) = app.get("kill_timeout").and_then(Value::as_u64) {
        w.key("kill_timeout", format!("{ms}ms"));
    }
    if let Some(bytes) = app.get("max_memory_restart").and_then(Value::as_u64) {
        w.key("max_memory", bytes.to_string());
    }
    if let Some(size) = str_of("max_memory_restart") {
        let size = size.trim();
        let bytes = match size.strip_suffix(['K', 'M', 'G']) {
            Some(n) => format!("{n}{}iB", &size[size.len() - 1..]),
            None => size.to_string(),
        };
        w.key("max_memory", bytes);
    }
    // Only a log inside the project: bosun (root) writes it, and the
    // ecosystem file may be the tenant's.
    match str_of("out_file").or(str_of("log_file")) {
        Some(out) if crate::config::check_inside(Path::new(out)).is_ok() => {
            w.key("log_file", Path::new(dir).join(out).display().to_string());
        }
        Some(out) => w.comment(format!(
            "PM2 `out_file = {out}`: a log outside the project dir; bosun keeps one under its state dir"
        )),
        None => {}
    }
    if str_of("error_file").is_some() {
        w.comment("PM2 `error_file`: bosun writes stdout and stderr to the one log, line by line");
    }
    if app.contains_key("log_date_format") {
        w.key("timestamps", true);
    }
    for key in [
        "exp_backoff_restart_delay",
        "watch",
        "ignore_watch",
        "cron_restart",
        "max_restarts",
        "min_uptime",
        "listen_timeout",
        "wait_ready",
    ] {
        if let Some(v) = app.get(key) {
            w.comment(format!(
                "PM2 `{key} = {v}`: no bosun counterpart (see docs/coming-from-pm2.md)"
            ));
        }
    }
    Ok(())
}

/// `args` as PM2 takes them: a list, or one string split at spaces.
fn words(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}
