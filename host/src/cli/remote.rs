//! The remote subcommands: `run`, `ps`, `logs`, `jobs`, `deliveries`,
//! `job`, `cancel`, `reload`, `upgrade`.
//! Each talks to a running server over the HTTP API (see `client`), prints
//! text for people or JSON with `--json`, and exits with a code scripts can
//! branch on: a job's exit code says how it ended (see [`ExitCode`]).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::ExitCode;
use super::client::{Client, ClientArgs, ClientError};
use super::format::{TerminalLines, bytes, duration_ms, for_terminal, table};
use crate::api::{JobPage, JobView};
use crate::jobs::{JobErrorKind, JobState};

/// How long one `GET …?wait=` may block before the client asks again.
const WAIT_SLICE: &str = "20s";

/// Run a remote command: connect, do `what`, turn a failure into its code.
pub async fn remote<F, Fut>(args: &ClientArgs, what: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<ExitCode, ClientError>>,
{
    let client = match Client::new(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    match what(client).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The exit code of a job in `job`'s state.
pub fn job_code(job: &JobView) -> ExitCode {
    match (job.state, job.error.as_ref().map(|e| e.kind)) {
        (JobState::Succeeded, _) => ExitCode::Ok,
        (JobState::TimedOut, _) => ExitCode::Timeout,
        (JobState::Cancelled, _) => ExitCode::Cancelled,
        (JobState::Interrupted, _) => ExitCode::Interrupted,
        (JobState::Queued | JobState::Running, _) => ExitCode::Pending,
        (JobState::Failed, Some(JobErrorKind::MemoryLimit)) => ExitCode::MemoryLimit,
        (JobState::Failed, Some(JobErrorKind::Trap)) => ExitCode::Trap,
        (JobState::Failed, Some(JobErrorKind::InvalidPlugin)) => ExitCode::InvalidPlugin,
        (JobState::Failed, Some(JobErrorKind::HostError)) => ExitCode::HostError,
        (JobState::Failed, _) => ExitCode::PluginError,
    }
}

/// Print a finished job for a person: its result, or why it failed.
fn report(job: &JobView) {
    if job.state == JobState::Succeeded {
        match &job.result {
            Some(Value::String(s)) if std::io::stdout().is_terminal() => {
                println!("{}", String::from_utf8_lossy(&for_terminal(s.as_bytes())));
            }
            Some(Value::String(s)) => println!("{s}"),
            None | Some(Value::Null) => {}
            Some(other) => print_json(other),
        }
        return;
    }
    // The message is the plugin's own words: a tenant's bytes.
    let message = job.error.as_ref().map_or("", |e| e.message.as_str());
    let message = if std::io::stderr().is_terminal() {
        String::from_utf8_lossy(&for_terminal(message.as_bytes())).into_owned()
    } else {
        message.to_string()
    };
    eprintln!("error: job {} {}: {message}", job.id, job.state);
}

/// `bosun run`.
pub async fn run(
    client: Client,
    args: &ClientArgs,
    project: &str,
    action: &str,
    params: &[(String, String)],
    follow: bool,
    detach: bool,
) -> Result<ExitCode, ClientError> {
    let params: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let path = format!("/v1/projects/{project}/actions/{action}");
    let req = client
        .request(Method::POST, &path, Some(project))
        .json(&json!({ "params": params }));
    let (json, job): (Value, JobView) = client.typed(req, "a job").await?;
    let id = job.id;
    if detach {
        if args.json {
            print_json(&json);
        } else {
            println!("{id}");
        }
        return Ok(ExitCode::Ok);
    }
    if follow {
        stream(
            &client,
            &format!("/v1/jobs/{id}/log?follow=1"),
            Some(project),
            true,
        )
        .await?;
    }
    let (json, job) = wait(&client, &id, project, !follow && !args.json).await?;
    if args.json {
        print_json(&json);
    } else {
        report(&job);
    }
    Ok(job_code(&job))
}

/// Wait for the job to end, showing progress on a terminal.
async fn wait(
    client: &Client,
    id: &str,
    project: &str,
    progress: bool,
) -> Result<(Value, JobView), ClientError> {
    let progress = progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let path = format!("/v1/jobs/{id}?wait={WAIT_SLICE}");
    loop {
        let req = client.request(Method::GET, &path, Some(project));
        let ask = client.typed::<JobView>(req, "a job");
        tokio::pin!(ask);
        let job = loop {
            tokio::select! {
                job = &mut ask => break job?,
                _ = ticker.tick(), if progress => {
                    eprint!("\rwaiting for job {id}: {}s ", started.elapsed().as_secs());
                    let _ = std::io::stderr().flush();
                }
            }
        };
        if job.1.state.is_terminal() {
            if progress {
                eprint!("\r\x1b[K");
            }
            return Ok(job);
        }
    }
}

/// Print a streamed text body as it arrives; to stderr when `to_stderr`.
async fn stream(
    client: &Client,
    path: &str,
    project: Option<&str>,
    to_stderr: bool,
) -> Result<(), ClientError> {
    let resp = client
        .send(client.request(Method::GET, path, project))
        .await?;
    let mut body = resp.bytes_stream();
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let mut lines = TerminalLines::default();
    let write = |bytes: &[u8]| {
        if to_stderr {
            let _ = std::io::stderr().write_all(bytes);
            true
        } else {
            let mut out = std::io::stdout();
            out.write_all(bytes).and_then(|()| out.flush()).is_ok()
        }
    };
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        let chunk = if terminal {
            lines.push(&chunk)
        } else {
            chunk.to_vec()
        };
        if !write(&chunk) {
            // The reader went away (`| head`): stop quietly.
            return Ok(());
        }
    }
    if terminal {
        write(&lines.finish());
    }
    Ok(())
}

/// `bosun ps`.
pub async fn ps(
    client: Client,
    args: &ClientArgs,
    project: Option<&str>,
) -> Result<ExitCode, ClientError> {
    let names: Vec<String> = match project {
        Some(p) => vec![p.to_string()],
        None => client
            .json(client.request(Method::GET, "/v1/projects", None))
            .await?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut projects = Vec::new();
    for name in &names {
        let req = client.request(Method::GET, &format!("/v1/projects/{name}"), Some(name));
        projects.push(client.json(req).await?);
    }
    if args.json {
        print_json(&Value::Array(projects));
        return Ok(ExitCode::Ok);
    }
    let mut rows = Vec::new();
    for p in &projects {
        for proc in p["processes"].as_array().into_iter().flatten() {
            let num = |k: &str| proc[k].as_u64().unwrap_or(0);
            rows.push(vec![
                p["name"].as_str().unwrap_or("").to_string(),
                proc["name"].as_str().unwrap_or("").to_string(),
                num("instance").to_string(),
                proc["state"].as_str().unwrap_or("").to_string(),
                proc["pid"].as_u64().map_or("-".into(), |p| p.to_string()),
                duration_ms(num("uptime_ms")),
                num("restarts").to_string(),
                format!("{:.1}%", proc["cpu_percent"].as_f64().unwrap_or(0.0)),
                bytes(num("rss_bytes")),
            ]);
        }
    }
    let header = [
        "PROJECT", "NAME", "INST", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEM",
    ];
    print!("{}", table(&header, &rows));
    for p in &projects {
        let name = p["name"].as_str().unwrap_or("");
        if let Ok(report) =
            serde_json::from_value::<crate::confine::Report>(p["confinement"].clone())
        {
            println!("{name}: {}", report.summary());
        }
    }
    Ok(ExitCode::Ok)
}

/// `bosun logs`.
pub async fn logs(
    client: Client,
    project: &str,
    process: Option<&str>,
    lines: usize,
    follow: bool,
) -> Result<ExitCode, ClientError> {
    let base = match process {
        Some(name) => format!("/v1/projects/{project}/processes/{name}/logs"),
        None => format!("/v1/projects/{project}/logs"),
    };
    let follow = if follow { "&follow=1" } else { "" };
    stream(
        &client,
        &format!("{base}?lines={lines}{follow}"),
        Some(project),
        false,
    )
    .await?;
    Ok(ExitCode::Ok)
}

/// `bosun jobs`.
pub async fn jobs(
    client: Client,
    args: &ClientArgs,
    project: Option<&str>,
    state: Option<&str>,
    limit: u32,
) -> Result<ExitCode, ClientError> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(p) = project {
        query.push(("project", p.to_string()));
    }
    if let Some(s) = state {
        query.push(("state", s.to_string()));
    }
    let req = client
        .request(Method::GET, "/v1/jobs", project)
        .query(&query);
    let (json, page): (Value, JobPage) = client.typed(req, "a page of jobs").await?;
    if args.json {
        print_json(&json);
        return Ok(ExitCode::Ok);
    }
    let rows: Vec<Vec<String>> = page
        .jobs
        .into_iter()
        .map(|j| {
            let took = took(&j);
            vec![
                j.id,
                j.project,
                j.action,
                j.state.to_string(),
                j.requested_by,
                j.created_at,
                took,
            ]
        })
        .collect();
    let header = ["ID", "PROJECT", "ACTION", "STATE", "BY", "CREATED", "TOOK"];
    print!("{}", table(&header, &rows));
    Ok(ExitCode::Ok)
}

/// `bosun deliveries`.
pub async fn deliveries(
    client: Client,
    args: &ClientArgs,
    project: &str,
    limit: u32,
) -> Result<ExitCode, ClientError> {
    let req = client
        .request(
            Method::GET,
            &format!("/v1/projects/{project}/deliveries"),
            Some(project),
        )
        .query(&[("limit", limit.to_string())]);
    let page = client.json(req).await?;
    if args.json {
        print_json(&page);
        return Ok(ExitCode::Ok);
    }
    let rows: Vec<Vec<String>> = page["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or("-").to_string();
            let commit: String = text("after").chars().take(12).collect();
            vec![
                text("received_at"),
                text("forge"),
                text("ref"),
                commit,
                text("verdict"),
                text("job_id"),
                text("reason"),
            ]
        })
        .collect();
    let header = [
        "RECEIVED", "FORGE", "REF", "COMMIT", "VERDICT", "JOB", "WHY",
    ];
    print!("{}", table(&header, &rows));
    Ok(ExitCode::Ok)
}

/// How long a job ran, from its RFC 3339 times.
fn took(job: &JobView) -> String {
    let at = |t: Option<&String>| t.and_then(|t| humantime::parse_rfc3339(t).ok());
    match (at(job.started_at.as_ref()), at(job.finished_at.as_ref())) {
        (Some(a), Some(b)) => b
            .duration_since(a)
            .map(|d| format!("{}ms", d.as_millis()))
            .unwrap_or_default(),
        _ => "-".into(),
    }
}

/// `bosun job`.
pub async fn job(
    client: Client,
    args: &ClientArgs,
    id: &str,
    log: bool,
) -> Result<ExitCode, ClientError> {
    let (json, job): (Value, JobView) = client
        .typed(
            client.request(Method::GET, &format!("/v1/jobs/{id}"), None),
            "a job",
        )
        .await?;
    if args.json {
        print_json(&json);
    } else {
        let state = job.state.to_string();
        for (key, value) in [
            ("id", Some(&job.id)),
            ("project", Some(&job.project)),
            ("action", Some(&job.action)),
            ("state", Some(&state)),
            ("requested_by", Some(&job.requested_by)),
            ("created_at", Some(&job.created_at)),
            ("started_at", job.started_at.as_ref()),
            ("finished_at", job.finished_at.as_ref()),
        ] {
            println!("{key:<13} {}", value.map_or("-", String::as_str));
        }
        if let Some(error) = &job.error {
            println!("{:<13} {}: {}", "error", error.kind, error.message);
        }
        if let Some(result) = job.result.as_ref().filter(|r| !r.is_null()) {
            println!("result");
            print_json(result);
        }
    }
    if log {
        stream(&client, &format!("/v1/jobs/{id}/log"), None, false).await?;
    }
    Ok(job_code(&job))
}

/// `bosun cancel`.
pub async fn cancel(client: Client, args: &ClientArgs, id: &str) -> Result<ExitCode, ClientError> {
    let (json, job): (Value, JobView) = client
        .typed(
            client.request(Method::POST, &format!("/v1/jobs/{id}/cancel"), None),
            "a job",
        )
        .await?;
    if args.json {
        print_json(&json);
    } else {
        println!("job {id}: {}", job.state);
    }
    Ok(ExitCode::Ok)
}

/// `bosun reload`.
pub async fn reload(client: Client, args: &ClientArgs) -> Result<ExitCode, ClientError> {
    let report = client
        .json(client.request(Method::POST, "/v1/reload", None))
        .await?;
    if args.json {
        print_json(&report);
        return Ok(ExitCode::Ok);
    }
    if report["changed"] != json!(true) {
        println!("reloaded: nothing changed");
        return Ok(ExitCode::Ok);
    }
    println!("reloaded");
    let lists = [
        ("projects", "added"),
        ("projects", "removed"),
        ("projects", "restarted"),
        ("processes", "added"),
        ("processes", "removed"),
        ("processes", "restarted"),
        ("plugins", "added"),
        ("plugins", "removed"),
        ("plugins", "replaced"),
        ("keys", "added"),
        ("keys", "removed"),
        ("keys", "changed"),
    ];
    for (what, how) in lists {
        let names = strings(&report[what][how]);
        if !names.is_empty() {
            println!("  {what} {how}: {}", names.join(", "));
        }
    }
    for (what, key) in [
        ("cancelled", "jobs_cancelled"),
        ("interrupted", "jobs_interrupted"),
    ] {
        if let Some(n) = report[key].as_u64().filter(|n| *n > 0) {
            println!("  jobs of removed projects {what}: {n}");
        }
    }
    let fixed = strings(&report["restart_needed"]);
    if !fixed.is_empty() {
        println!(
            "  needs a restart of bosun (kept as they were): {}",
            fixed.join(", ")
        );
    }
    Ok(ExitCode::Ok)
}

/// The strings of a JSON list (none when it is not one).
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// `bosun upgrade`.
pub async fn upgrade(client: Client, args: &ClientArgs) -> Result<ExitCode, ClientError> {
    let report = client
        .json(client.request(Method::POST, "/v1/upgrade", None))
        .await?;
    if args.json {
        print_json(&report);
    } else {
        println!(
            "upgrading to {} ({})",
            report["version"].as_str().unwrap_or("?"),
            report["binary"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::Ok)
}
