//! The live process feed: Server-Sent Events carrying, once a second, the
//! visible process rows that changed, so a page shows state, pid, uptime,
//! CPU, memory, restarts and the last exit without reloading.
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
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::super::AppState;
use super::super::stream::{self, Item};
use super::super::views::ProcessView;
use super::{PageError, Viewer, layout};

/// How often the feed sends the rows.
const EVERY: Duration = Duration::from_secs(1);

/// What a feed has sent, so that each frame carries only what changed:
/// past an hour a process's uptime reads in minutes, so a steady fleet's
/// frames are nearly empty.
#[derive(Default)]
struct Frame {
    /// Each row shown, by id, in the order shown.
    rows: Vec<(String, Value)>,
    sent_once: bool,
}

impl Frame {
    /// The frame that brings the page from what was shown to `rows`:
    /// `{"rows": [changed…]}`, with `"ids"` (every row, in order) when
    /// rows came or went; none when nothing changed.
    fn next(&mut self, rows: Vec<Value>) -> Option<String> {
        let rows: Vec<(String, Value)> = rows
            .into_iter()
            .map(|r| (r["id"].as_str().unwrap_or_default().to_string(), r))
            .collect();
        let same_set = self.sent_once
            && self.rows.len() == rows.len()
            && self.rows.iter().zip(&rows).all(|(a, b)| a.0 == b.0);
        // Rows are in the same order when the set is the same: compare
        // each with its place, in one pass.
        let changed: Vec<&Value> = rows
            .iter()
            .enumerate()
            .filter(|(i, (_, r))| !same_set || self.rows[*i].1 != *r)
            .map(|(_, (_, r))| r)
            .collect();
        let frame = match (same_set, changed.is_empty()) {
            (true, true) => None,
            (true, false) => Some(json!({ "rows": changed })),
            (false, _) => {
                let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
                Some(json!({ "rows": changed, "ids": ids }))
            }
        };
        self.sent_once = true;
        self.rows = rows;
        frame.map(|f| f.to_string())
    }
}

/// Query of `GET /ui/live`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// One project's rows; every visible project's when absent.
    project: Option<String>,
}

/// `GET /ui/live[?project=p]`: a [`Frame`] each second something changed.
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
        let mut shown = Frame::default();
        loop {
            tick.tick().await;
            let all = state.projects.load();
            // Seen again each time: a reload may have closed a project
            // to this key (a project key added) while the feed runs.
            let rows = projects
                .iter()
                .filter(|p| state.auth.sees(&caller, p))
                .filter_map(|p| all.get(p).map(|h| (p, h.list())))
                .flat_map(|(p, list)| {
                    list.iter()
                        .map(|s| layout::row(p, &ProcessView::from(s)))
                        .collect::<Vec<_>>()
                })
                .collect();
            let Some(frame) = shown.next(rows) else {
                continue;
            };
            if tx.send(Item::Line(frame.into())).await.is_err() {
                return;
            }
        }
    });
    Ok(stream::respond(true, rx, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, pid: &str) -> Value {
        json!({ "id": id, "pid": pid })
    }

    #[test]
    fn a_frame_carries_only_what_changed_and_the_ids_when_rows_come_or_go() {
        let mut shown = Frame::default();
        let first = shown.next(vec![row("a/web-0", "1"), row("a/web-1", "2")]);
        let first: Value = serde_json::from_str(&first.expect("the first frame")).expect("json");
        assert_eq!(first["rows"].as_array().map(Vec::len), Some(2));
        assert_eq!(first["ids"], json!(["a/web-0", "a/web-1"]));
        assert_eq!(
            shown.next(vec![row("a/web-0", "1"), row("a/web-1", "2")]),
            None
        );
        let changed = shown.next(vec![row("a/web-0", "1"), row("a/web-1", "3")]);
        assert_eq!(
            changed.as_deref(),
            Some(r#"{"rows":[{"id":"a/web-1","pid":"3"}]}"#)
        );
        let gone = shown.next(vec![row("a/web-0", "1")]).expect("a frame");
        let gone: Value = serde_json::from_str(&gone).expect("json");
        assert_eq!(gone["ids"], json!(["a/web-0"]));
        assert_eq!(
            shown.next(Vec::new()).as_deref(),
            Some(r#"{"ids":[],"rows":[]}"#)
        );
    }
}
