//! The frame every page shares, and the pieces more than one page shows:
//! the process table (whose cells the live feed fills again) and buttons
//! that run an action.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};

use super::super::AppState;
use super::super::auth::Caller;
use super::super::views::ProcessView;
use super::session::Session;

/// A message shown above a page's content.
pub struct Flash {
    text: String,
}

impl Flash {
    /// A refusal or failure.
    pub fn error(text: &str) -> Self {
        Self { text: text.into() }
    }
}

/// A whole page for a signed-in browser.
pub fn page(session: &Session, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, Some(&session.csrf)))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Main" {
                        a.brand href="/" { "bosun" }
                        a href="/" { "Projects" }
                        a href="/ui/jobs" { "Jobs" }
                    }
                    form.signout method="post" action="/ui/signout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        span.who { "key " strong { (session.caller.name) } }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                div #status role="status" aria-live="polite" {}
            }
        }
    };
    Html(markup.into_string()).into_response()
}

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            @if let Some(csrf) = csrf {
                meta name="csrf-token" content=(csrf);
            }
            title { (title) " · bosun" }
            link rel="stylesheet" href="/ui/assets/app.css";
            script src="/ui/assets/app.js" defer {}
        }
    }
}

/// The sign-in form, with what went wrong last time.
pub fn sign_in(status: StatusCode, flash: Option<Flash>) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in", None))
            body.signin {
                main #main {
                    h1 { "bosun" }
                    @if let Some(flash) = flash {
                        p.flash.error role="alert" { (flash.text) }
                    }
                    form method="post" action="/ui/signin" {
                        label for="key" { "API key" }
                        input #key type="password" name="key" autocomplete="current-password"
                            required autofocus;
                        button type="submit" { "Sign in" }
                    }
                    p.hint {
                        "The key is exchanged for a session on the server and is not kept by this browser."
                    }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A refusal as a page, with the API's status and message.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Refused", None))
            body {
                main #main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.flash.error role="alert" { (message) }
                    p { a href="/" { "Back to the projects" } }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A path segment or query value, percent-encoded.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Whether `caller` may run `action` in `project`, and the project has it
/// loaded.
pub fn can_run(state: &AppState, caller: &Caller, project: &str, action: &str) -> bool {
    caller.action(action).is_ok()
        && state
            .registry
            .load()
            .get(project, action)
            .is_some_and(|a| a.is_ok())
}

/// A button that runs `action` of `project` with `params` through the API.
/// `then` is what the script does after: `stay` (say so), `job` (open the
/// job's page) or `reload` (once the job has ended).
pub fn run_button(
    project: &str,
    action: &str,
    params: &Value,
    label: &str,
    then: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        button.run type="button" data-project=(project) data-action=(action)
            data-params=(params.to_string()) data-then=(then) data-confirm=[confirm] {
            (label)
        }
    }
}

/// The process-control actions shown beside processes.
const CONTROLS: [(&str, &str); 3] = [("start", "Start"), ("stop", "Stop"), ("restart", "Restart")];

/// Start, stop and restart for `name` (a process) or the whole project,
/// as far as the caller may run them.
pub fn controls(state: &AppState, caller: &Caller, project: &str, name: Option<&str>) -> Markup {
    let params = name.map_or_else(|| json!({}), |n| json!({ "name": n }));
    html! {
        @for (action, label) in CONTROLS {
            @if can_run(state, caller, project, action) {
                @let label = match name {
                    Some(n) => format!("{label} {n}"),
                    None => format!("{label} all"),
                };
                (run_button(project, action, &params, &label, "stay", None))
            }
        }
    }
}

/// A process table: one row per instance, its cells named so that the
/// live feed can fill them again.
pub fn processes(
    state: &AppState,
    caller: &Caller,
    project: &str,
    procs: &[ProcessView],
) -> Markup {
    html! {
        div.scroll {
            table.procs data-project=(project) {
                thead { tr {
                    th scope="col" { "Process" } th scope="col" { "State" } th scope="col" { "PID" }
                    th scope="col" { "Uptime" } th scope="col" { "CPU" } th scope="col" { "Memory" }
                    th scope="col" { "Restarts" } th scope="col" { "Last exit" } th scope="col" { "" }
                } }
                tbody {
                    @for p in procs {
                        @let row = row(project, p);
                        tr data-row=(row["id"].as_str().unwrap_or_default())
                            class=[row["unstable"].as_bool().unwrap_or(false).then_some("unstable")] {
                            th scope="row" {
                                a href={ "/ui/projects/" (enc(project)) "/logs?process=" (enc(&p.name)) } {
                                    (p.name) "-" (p.instance)
                                }
                            }
                            @for cell in CELLS {
                                td data-cell=(cell) { (row[cell].as_str().unwrap_or_default()) }
                            }
                            td.acts { (controls(state, caller, project, Some(&p.name))) }
                        }
                    }
                }
            }
        }
    }
}

/// The cells of a process row the live feed refreshes.
pub const CELLS: [&str; 7] = [
    "state", "pid", "uptime", "cpu", "memory", "restarts", "exit",
];

/// A process row as the live feed sends it: its id, each cell's text and
/// whether it is unstable (waiting out a backoff between restarts).
pub fn row(project: &str, p: &ProcessView) -> Value {
    let unstable = p.state == "backoff";
    let state = if unstable {
        "backoff (unstable)".to_string()
    } else {
        p.state.clone()
    };
    let exit = match (p.exit_code, p.exit_signal) {
        (_, Some(sig)) => format!("signal {sig}"),
        (Some(code), None) => format!("code {code}"),
        (None, None) => "—".into(),
    };
    json!({
        "id": format!("{project}/{}-{}", p.name, p.instance),
        "unstable": unstable,
        "state": state,
        "pid": p.pid.map_or_else(|| "—".into(), |pid| pid.to_string()),
        "uptime": if p.pid.is_some() { duration(p.uptime_ms / 1000) } else { "—".into() },
        "cpu": format!("{:.1}%", p.cpu_percent),
        "memory": bytesize::ByteSize::b(p.rss_bytes).display().iec().to_string(),
        "restarts": p.restarts.to_string(),
        "exit": exit,
    })
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `9s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(9), "9s");
        assert_eq!(duration(250), "4m 10s");
        assert_eq!(duration(7500), "2h 5m");
        assert_eq!(duration(3 * 86400 + 4 * 3600 + 5), "3d 4h");
    }

    #[test]
    fn a_process_in_backoff_is_marked_unstable() {
        let mut p = ProcessView {
            name: "web".into(),
            instance: 1,
            state: "backoff".into(),
            pid: None,
            uptime_ms: 0,
            restarts: 4,
            exit_code: Some(3),
            exit_signal: None,
            message: None,
            cpu_percent: 0.0,
            rss_bytes: 0,
        };
        let r = row("shop", &p);
        assert_eq!(
            (r["id"].as_str(), r["unstable"].as_bool()),
            (Some("shop/web-1"), Some(true))
        );
        assert_eq!(r["exit"], "code 3");
        p.state = "running".into();
        p.pid = Some(42);
        p.rss_bytes = 3 * 1024 * 1024;
        let r = row("shop", &p);
        assert_eq!(
            (r["unstable"].as_bool(), r["pid"].as_str()),
            (Some(false), Some("42"))
        );
        assert_eq!(r["memory"], "3.0 MiB");
    }
}
