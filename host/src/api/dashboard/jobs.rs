//! The job pages: the history with its filters and pages, and one job
//! with its log live while it runs, its result, cancel and run-again.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::super::AppState;
use super::super::jobs::{RunQuery, get_job, list_jobs};
use super::super::query::{ApiPath, ApiQuery};
use super::layout::{self, can_run, enc, run_button};
use super::{PageError, Viewer};
use crate::jobs::JobState;

/// `/ui/jobs`: the history, newest first, filtered and paged by the very
/// query `GET /v1/jobs` takes.
pub async fn list(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    uri: Uri,
) -> Result<Response, PageError> {
    let caller = &session.caller;
    let Json(page) = list_jobs(
        State(state.clone()),
        caller.clone(),
        ApiQuery::from_uri(&uri)?,
    )
    .await?;
    let given: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        given
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let projects: Vec<String> = state
        .projects
        .load()
        .keys()
        .filter(|p| state.auth.sees(caller, p))
        .cloned()
        .collect();
    let next = page.next.as_ref().map(|id| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in given.iter().filter(|(k, _)| k != "before") {
            q.append_pair(k, v);
        }
        q.append_pair("before", id);
        format!("/ui/jobs?{}", q.finish())
    });
    let body = html! {
        form.filters method="get" action="/ui/jobs" {
            label { "Project "
                select name="project" {
                    option value="" { "any" }
                    @for p in &projects { option value=(p) selected[get("project") == p] { (p) } }
                }
            }
            label { "Action " input name="action" type="text" value=(get("action")); }
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in JobState::ALL.map(JobState::as_str) { option value=(s) selected[get("state") == s] { (s) } }
                }
            }
            button type="submit" { "Filter" }
        }
        (table(&page.jobs))
        @if let Some(next) = next {
            p { a.button href=(next) rel="next" { "Older jobs" } }
        }
    };
    Ok(layout::page(&session, "Jobs", body))
}

/// A table of jobs: who, what, when, how long, and how it ended.
pub fn table(jobs: &[super::super::views::JobView]) -> Markup {
    html! {
        @if jobs.is_empty() {
            p { "No jobs." }
        } @else {
            div.scroll { table.jobs {
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Project" } th scope="col" { "Action" }
                    th scope="col" { "By" } th scope="col" { "Created" } th scope="col" { "Took" }
                    th scope="col" { "Outcome" }
                } }
                tbody {
                    @for j in jobs {
                        tr {
                            th scope="row" { a href={ "/ui/jobs/" (enc(&j.id)) } { (j.id.get(..8).unwrap_or(&j.id)) } }
                            td { (j.project) }
                            td { (j.action) }
                            td { (j.requested_by) }
                            td { time datetime=(j.created_at) { (j.created_at) } }
                            td { (took(j.started_at.as_deref(), j.finished_at.as_deref())) }
                            td { span class={ "state " (j.state) } { (j.state) } }
                        }
                    }
                }
            } }
        }
    }
}

/// How long a job ran, from its RFC 3339 times.
fn took(started: Option<&str>, finished: Option<&str>) -> String {
    let parse = |t: Option<&str>| t.and_then(|t| humantime::parse_rfc3339(t).ok());
    match (parse(started), parse(finished)) {
        (Some(s), Some(f)) => f.duration_since(s).map_or_else(
            |_| "—".into(),
            |d| match d.as_millis() {
                ms if ms < 10_000 => format!("{:.1}s", d.as_secs_f64()),
                _ => layout::duration(d.as_secs()),
            },
        ),
        (Some(_), None) => "running".into(),
        _ => "—".into(),
    }
}

/// `/ui/jobs/{id}`: the job, its log (live while it runs), its result,
/// cancel and run-again.
pub async fn show(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, PageError> {
    let caller = &session.caller;
    let no_wait = ApiQuery(RunQuery::default());
    let Json(job) = get_job(
        State(state.clone()),
        caller.clone(),
        ApiPath(id.clone()),
        no_wait,
    )
    .await?;
    let ended = job.state.is_terminal();
    let lines = match state
        .jobs
        .follow(&id)
        .await
        .map_err(super::super::ApiError::from)?
    {
        Some(crate::jobs::LogFollow::Done(lines)) => lines,
        Some(crate::jobs::LogFollow::Live { lines, .. }) => lines,
        None => Vec::new(),
    };
    let may_cancel = !ended
        && caller.require(crate::config::Role::Run).is_ok()
        && (caller.is_admin() || job.requested_by == caller.name);
    let params: Value = json!(job.params);
    let body = html! {
        nav.sub aria-label="Job" {
            a href={ "/ui/projects/" (enc(&job.project)) } { "Back to " (job.project) }
            a href={ "/ui/jobs?project=" (enc(&job.project)) } { "Its project's jobs" }
        }
        dl.job {
            dt { "State" } dd { span #job-state class={ "state " (job.state) } { (job.state) } }
            dt { "Action" } dd { (job.action) }
            dt { "Parameters" } dd { code { (params) } }
            dt { "Requested by" } dd { (job.requested_by) }
            dt { "Created" } dd { (job.created_at) }
            dt { "Took" } dd { (took(job.started_at.as_deref(), job.finished_at.as_deref())) }
        }
        p.acts {
            @if may_cancel {
                button #cancel type="button" data-job=(job.id) { "Cancel" }
            }
            @if ended && can_run(&state, caller, &job.project, &job.action) {
                (run_button(&job.project, &job.action, &params, "Run again", "job", None))
            }
        }
        @if let Some(e) = &job.error {
            section aria-labelledby="err" {
                h2 #err { "Error" }
                p.flash.error { strong { (e.kind) } ": " (e.message) }
            }
        }
        @if let Some(r) = &job.result {
            section aria-labelledby="res" {
                h2 #res { "Result" }
                pre #job-result { (serde_json::to_string_pretty(r).unwrap_or_default()) }
            }
        }
        section aria-labelledby="logh" {
            h2 #logh { "Log" }
            div #job-log.log tabindex="0" role="log" aria-label="Job log"
                data-job-follow=[(!ended).then(|| format!("/v1/jobs/{}/log?follow=1", enc(&job.id)))] {
                @if ended {
                    @for line in &lines { div.line { (line) } }
                }
            }
        }
    };
    Ok(layout::page(&session, &format!("Job {}", job.id), body))
}
