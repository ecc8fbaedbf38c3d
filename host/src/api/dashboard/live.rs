//! The live process feed: Server-Sent Events carrying every visible
//! process row once a second, so a page shows state, pid, uptime, CPU,
//! memory, restarts and the last exit without reloading.
//!
//! The rows are made by the same [`layout::row`] as the page's first
//! render, so the feed and the page cannot format a cell two ways. A feed
//! is a long request like a log follow: it counts against the key's and
//! the server's streams, and ends with the session, the key, or (for one
//! project's feed) the project.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::super::AppState;
use super::super::stream::{self, Item};
use super::super::views::ProcessView;
use super::{PageError, Viewer, layout};

/// How often the feed sends the rows.
const EVERY: Duration = Duration::from_secs(1);

/// Query of `GET /ui/live`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// One project's rows; every visible project's when absent.
    project: Option<String>,
}

/// `GET /ui/live[?project=p]`: `{"rows":[…]}` each second.
pub async fn processes(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    Query(q): Query<LiveQuery>,
) -> Result<Response, PageError> {
    let caller = session.caller;
    let (projects, held) = match q.project {
        Some(p) => {
            state.auth.project(&caller, &p)?;
            let held = state.hold_on(&caller, &p)?;
            (vec![p], held)
        }
        None => {
            let visible = state
                .projects
                .load()
                .keys()
                .filter(|p| state.auth.sees(&caller, p))
                .cloned()
                .collect();
            (visible, state.long_requests.hold(&caller)?)
        }
    };
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let all = state.projects.load();
            // Seen again each time: a reload may have closed a project
            // to this key (a project key added) while the feed runs.
            let rows: Vec<_> = projects
                .iter()
                .filter(|p| state.auth.sees(&caller, p))
                .filter_map(|p| all.get(p).map(|h| (p, h.list())))
                .flat_map(|(p, list)| {
                    list.iter()
                        .map(|s| layout::row(p, &ProcessView::from(s)))
                        .collect::<Vec<_>>()
                })
                .collect();
            let frame = json!({ "rows": rows }).to_string();
            if tx.send(Item::Line(frame.into())).await.is_err() {
                return;
            }
        }
    });
    Ok(stream::respond(true, rx, held))
}
