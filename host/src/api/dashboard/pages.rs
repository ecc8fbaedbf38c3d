//! The project pages: every project at a glance, one project, its logs,
//! the form that runs one of its actions, and its deploys.
//!
//! Each reads through the API's own handler with the session's caller, so
//! a page refuses exactly as the API would (403 out of scope, 404 unknown)
//! and shows nothing the key could not read.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::AppState;
use super::super::error::ApiError;
use super::super::jobs::{ListQuery, list_jobs};
use super::super::projects::{get_project, list_actions, list_projects, visible_project};
use super::super::query::{ApiPath, ApiQuery};
use super::super::stream::format_line;
use super::super::views::{JobView, ProjectView, rfc3339};
use super::layout::{self, can_run, enc, run_button};
use super::{PageError, Viewer};
use crate::supervisor::RING_LINES;

/// Lines a log page shows first, and how many more "older" adds.
const LOG_PAGE: usize = 200;

/// `/`: every project the key reaches, with its processes, live.
pub async fn overview(
    State(state): State<AppState>,
    Viewer(session): Viewer,
) -> Result<Response, PageError> {
    let caller = &session.caller;
    let Json(summaries) = list_projects(State(state.clone()), caller.clone()).await;
    let mut sections = Vec::new();
    for summary in &summaries {
        let Json(project) = get_project(
            State(state.clone()),
            caller.clone(),
            ApiPath(summary.name.clone()),
        )
        .await?;
        sections.push(project);
    }
    let body = html! {
        @if sections.is_empty() {
            p { "This key reaches no project." }
        }
        div data-live="/ui/live" {
            @for p in &sections {
                section.project aria-labelledby={ "p-" (p.name) } {
                    h2 #{ "p-" (p.name) } { a href={ "/ui/projects/" (enc(&p.name)) } { (p.name) } }
                    p.acts { (layout::controls(&state, caller, &p.name, None)) }
                    (layout::processes(&state, caller, &p.name, &p.processes))
                }
            }
        }
    };
    Ok(layout::page(&session, "Projects", body))
}

/// `/ui/projects/{p}`: its processes (live), its actions and recent jobs.
pub async fn project(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, PageError> {
    let caller = &session.caller;
    let Json(project) =
        get_project(State(state.clone()), caller.clone(), ApiPath(name.clone())).await?;
    let Json(actions) =
        list_actions(State(state.clone()), caller.clone(), ApiPath(name.clone())).await?;
    let recent = jobs_of(&state, caller, &format!("project={}&limit=10", enc(&name))).await?;
    let base = format!("/ui/projects/{}", enc(&name));
    let body = html! {
        nav.sub aria-label="Project" {
            a href={ (base) "/logs" } { "Logs" }
            a href={ (base) "/deploy" } { "Deploy" }
            a href={ "/ui/jobs?project=" (enc(&name)) } { "Jobs" }
        }
        (summary(&project))
        section aria-labelledby="procs" {
            h2 #procs { "Processes" }
            p.acts { (layout::controls(&state, caller, &name, None)) }
            div data-live={ "/ui/live?project=" (enc(&name)) } {
                (layout::processes(&state, caller, &name, &project.processes))
            }
        }
        section aria-labelledby="actions" {
            h2 #actions { "Actions" }
            ul.actions {
                @for a in &actions {
                    li {
                        @if a.available && caller.action(&a.name).is_ok() {
                            a href={ (base) "/actions/" (enc(&a.name)) } { (a.name) }
                        } @else {
                            span { (a.name) }
                        }
                        " — " (a.summary.as_deref().unwrap_or("its plugin failed to load"))
                    }
                }
            }
        }
        section aria-labelledby="recent" {
            h2 #recent { "Recent jobs" }
            (super::jobs::table(&recent))
        }
    };
    Ok(layout::page(&session, &name, body))
}

fn summary(p: &ProjectView) -> Markup {
    html! {
        p {
            (p.processes.iter().filter(|s| s.state == "running").count()) " of "
            (p.processes.len()) " process instances running; "
            (p.queued_jobs) " job(s) queued."
        }
    }
}

/// A commit id short enough to read.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The jobs `query` (the API's own query of `GET /v1/jobs`) lists.
pub async fn jobs_of(
    state: &AppState,
    caller: &super::super::Caller,
    query: &str,
) -> Result<Vec<JobView>, ApiError> {
    let uri: Uri = format!("/?{query}")
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_query", "a malformed query"))?;
    let q = ApiQuery::<ListQuery>::from_uri(&uri)?;
    let Json(page) = list_jobs(State(state.clone()), caller.clone(), q).await?;
    Ok(page.jobs)
}

/// Query of a log page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// One process's lines; every process's when absent.
    process: Option<String>,
    /// How many recent lines.
    lines: Option<usize>,
}

/// `/ui/projects/{p}/logs`: recent lines, "older", a live follow that
/// pauses while the reader scrolls up, and a filter.
pub async fn logs(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    ApiPath(name): ApiPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, PageError> {
    let handle = visible_project(&state, &session.caller, &name)?;
    let count = q.lines.unwrap_or(LOG_PAGE).clamp(1, RING_LINES);
    let lines = handle
        .logs(q.process.as_deref(), count)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let base = format!("/ui/projects/{}/logs", enc(&name));
    let (api, process_q) = match &q.process {
        Some(p) => (
            format!("/v1/projects/{}/processes/{}/logs", enc(&name), enc(p)),
            format!("process={}&", enc(p)),
        ),
        None => (format!("/v1/projects/{}/logs", enc(&name)), String::new()),
    };
    let title = match &q.process {
        Some(p) => format!("{name}: {p} log"),
        None => format!("{name}: logs"),
    };
    let body = html! {
        nav.sub aria-label="Project" {
            a href={ "/ui/projects/" (enc(&name)) } { "Back to " (name) }
            a href=(base) { "All processes" }
        }
        div.logbar {
            @if lines.len() >= count && count < RING_LINES {
                a.button href={ (base) "?" (process_q) "lines=" ((count + LOG_PAGE).min(RING_LINES)) } { "Older" }
            }
            label { "Filter " input #log-filter type="search" placeholder="text to keep"; }
            label { input #log-follow type="checkbox" checked; " Follow" }
            button #log-resume type="button" hidden { "Paused: show new lines" }
        }
        div #log.log tabindex="0" role="log" aria-label="Log lines"
            data-follow={ (api) "?follow=1&lines=0" } {
            @for line in &lines {
                div.line { (format_line(line)) }
            }
        }
    };
    Ok(layout::page(&session, &title, body))
}

/// `/ui/projects/{p}/actions/{a}`: a form of the action's declared
/// parameters; submitting it opens the new job's live log.
pub async fn action(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    ApiPath((name, action)): ApiPath<(String, String)>,
) -> Result<Response, PageError> {
    let caller = &session.caller;
    let Json(actions) =
        list_actions(State(state.clone()), caller.clone(), ApiPath(name.clone())).await?;
    let found = actions
        .iter()
        .find(|a| a.name == action)
        .ok_or_else(|| ApiError::not_found(format!("project `{name}` has no action `{action}`")))?;
    caller.action(&action)?;
    let body = html! {
        nav.sub aria-label="Project" { a href={ "/ui/projects/" (enc(&name)) } { "Back to " (name) } }
        p { (found.summary.as_deref().unwrap_or("its plugin failed to load")) }
        form.run-form data-project=(name) data-action=(action) {
            @for p in &found.params {
                div.field {
                    label for={ "param-" (p.name) } {
                        (p.name) @if p.required { " (required)" }
                    }
                    input id={ "param-" (p.name) } name=(p.name) type="text"
                        value=[p.default.as_deref()] required[p.required]
                        aria-describedby={ "help-" (p.name) };
                    small id={ "help-" (p.name) } {
                        (p.summary)
                        @if let Some(d) = &p.default { " Default: " code { (d) } }
                    }
                }
            }
            @if found.params.is_empty() {
                p { "This action takes no parameters." }
            }
            p.flash.error.form-error role="alert" hidden {}
            button type="submit" disabled[!found.available] { "Run " (action) }
        }
    };
    Ok(layout::page(
        &session,
        &format!("{name}: run {action}"),
        body,
    ))
}

/// `/ui/projects/{p}/deploy`: the revision and releases as the last
/// `status` job saw them, deploy, roll back to a kept release, and the
/// webhook's deliveries.
pub async fn deploy(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, PageError> {
    let caller = &session.caller;
    visible_project(&state, caller, &name)?;
    let last = jobs_of(
        &state,
        caller,
        &format!(
            "project={}&action=status&state=succeeded&limit=1",
            enc(&name)
        ),
    )
    .await?;
    let status = last.first();
    let result = status.and_then(|j| j.result.clone()).unwrap_or(Value::Null);
    let git = &result["git"];
    let releases = result["releases"].as_array().cloned().unwrap_or_default();
    let deliveries = match state.hooks.get(&name) {
        Some(_) => {
            let uri: Uri = "/?limit=20".parse().map_err(ApiError::internal)?;
            let q = ApiQuery::from_uri(&uri)?;
            let Json(page) = super::super::hooks::list_deliveries(
                State(state.clone()),
                caller.clone(),
                ApiPath(name.clone()),
                q,
            )
            .await?;
            Some(serde_json::to_value(page).map_err(ApiError::internal)?)
        }
        None => None,
    };
    let body = html! {
        nav.sub aria-label="Project" { a href={ "/ui/projects/" (enc(&name)) } { "Back to " (name) } }
        section aria-labelledby="rev" {
            h2 #rev { "Current revision" }
            @match status {
                Some(job) => {
                    @if git.is_object() {
                        p.revision {
                            code { (git["revision"].as_str().unwrap_or("?")) }
                            " on " (git["branch"].as_str().unwrap_or("(detached)")) ": "
                            (git["subject"].as_str().unwrap_or(""))
                        }
                    } @else {
                        p { "Not a git checkout: " (result["git_error"].as_str().unwrap_or("")) }
                    }
                    p.hint { "As of the status job " a href={ "/ui/jobs/" (job.id) } { (job.id) }
                        " at " (job.finished_at.as_deref().unwrap_or("")) "." }
                }
                None => { p { "No status job has run yet." } }
            }
            p.acts {
                @if can_run(&state, caller, &name, "status") {
                    (run_button(&name, "status", &json!({}), "Check now", "reload", None))
                }
                @if can_run(&state, caller, &name, "deploy") {
                    (run_button(&name, "deploy", &json!({}), "Deploy", "job",
                        Some(&format!("Deploy the newest commit to {name}?"))))
                }
            }
        }
        @if !releases.is_empty() {
            section aria-labelledby="releases" {
                h2 #releases { "Releases" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Release" } th scope="col" { "Revision" } th scope="col" { "Made" } th scope="col" { "" } } }
                    tbody {
                        @for r in &releases {
                            @let rname = r["name"].as_str().unwrap_or("");
                            tr {
                                th scope="row" { (rname) @if r["current"] == true { " (current)" } }
                                td { code { (short(r["revision"].as_str().unwrap_or(""))) } }
                                td { (r["created_at"].as_u64().map(|s| rfc3339(s.saturating_mul(1000))).unwrap_or_default()) }
                                td {
                                    @if r["current"] != true && can_run(&state, caller, &name, "rollback") {
                                        (run_button(&name, "rollback", &json!({ "target": rname }),
                                            &format!("Roll back to {rname}"), "job",
                                            Some(&format!("Roll {name} back to {rname}?"))))
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        @if let Some(page) = deliveries {
            section aria-labelledby="deliveries" {
                h2 #deliveries { "Webhook deliveries" }
                div.scroll { table {
                    thead { tr {
                        th scope="col" { "Received" } th scope="col" { "Forge" } th scope="col" { "Ref" }
                        th scope="col" { "Commit" } th scope="col" { "Verdict" } th scope="col" { "Job" }
                    } }
                    tbody {
                        @for d in page["deliveries"].as_array().into_iter().flatten() {
                            tr {
                                td { (d["received_at"].as_str().unwrap_or("")) }
                                td { (d["forge"].as_str().unwrap_or("—")) }
                                td { (d["ref"].as_str().unwrap_or("—")) }
                                td { code { (short(d["after"].as_str().unwrap_or("—"))) } }
                                td { (d["verdict"].as_str().unwrap_or("")) @if let Some(r) = d["reason"].as_str() { ": " (r) } }
                                td { @if let Some(id) = d["job_id"].as_str() { a href={ "/ui/jobs/" (id) } { (id) } } }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(layout::page(&session, &format!("{name}: deploy"), body))
}
