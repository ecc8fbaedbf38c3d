//! Prometheus metrics, served at `/metrics`.
//!
//! Counters and histograms are updated where things happen (requests in the
//! API, job outcomes in the runner); gauges that describe current state
//! (queue depth, restarts) are read from their owners at scrape time, so no
//! module keeps a copy of another's state.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 100 µs to ~7 min, ×4 per bucket.
    Histogram::new(exponential_buckets(0.0001, 4.0, 12))
}

/// bosun's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    requests: Family<Labels, Counter>,
    jobs: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    run_seconds: Histograms,
    wait_seconds: Histograms,
    queue_depth: Family<Labels, Gauge>,
    restarts: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bosun");
        let requests = Family::<Labels, Counter>::default();
        let jobs = Family::<Labels, Counter>::default();
        let refused = Family::<Labels, Counter>::default();
        let run_seconds = Histograms::new_with_constructor(seconds_histogram);
        let wait_seconds = Histograms::new_with_constructor(seconds_histogram);
        let queue_depth = Family::<Labels, Gauge>::default();
        let restarts = Family::<Labels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by status code",
            requests.clone(),
        );
        registry.register(
            "jobs",
            "Jobs finished, by project, action and final state",
            jobs.clone(),
        );
        registry.register(
            "jobs_refused",
            "Jobs refused because the project's queue was full",
            refused.clone(),
        );
        registry.register(
            "job_run_seconds",
            "Time a job's plugin ran, by project and action",
            run_seconds.clone(),
        );
        registry.register(
            "job_wait_seconds",
            "Time a job waited in its queue, by project and action",
            wait_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs waiting per project, not counting the running one",
            queue_depth.clone(),
        );
        registry.register(
            "process_restarts",
            "Restarts of each supervised process instance since bosun started",
            restarts.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                requests,
                jobs,
                refused,
                run_seconds,
                wait_seconds,
                queue_depth,
                restarts,
            }),
        }
    }
}

/// What the metrics count of a finished job: plain fields, so the jobs
/// module reports to the metrics without the metrics knowing a job.
#[derive(Debug, Clone, Copy)]
pub struct FinishedJob<'a> {
    /// The job's project.
    pub project: &'a str,
    /// The action it ran.
    pub action: &'a str,
    /// How it ended (`succeeded`, `failed`, `cancelled`).
    pub state: &'a str,
    /// Seconds it ran, when it started.
    pub run_seconds: Option<f64>,
    /// Seconds it waited in the queue, when it started.
    pub wait_seconds: Option<f64>,
}

impl Metrics {
    /// Count an HTTP response.
    pub fn request(&self, status: u16) {
        self.inner
            .requests
            .get_or_create(&vec![("status", status.to_string())])
            .inc();
    }

    /// Count a job refused for a full queue.
    pub fn job_refused(&self, project: &str) {
        self.inner
            .refused
            .get_or_create(&vec![("project", project.to_string())])
            .inc();
    }

    /// Count a finished job and observe its times.
    pub fn job_finished(&self, job: FinishedJob<'_>) {
        let labels = vec![
            ("project", job.project.to_string()),
            ("action", job.action.to_string()),
        ];
        let mut with_state = labels.clone();
        with_state.push(("state", job.state.to_string()));
        self.inner.jobs.get_or_create(&with_state).inc();
        if let Some(run) = job.run_seconds {
            self.inner.run_seconds.get_or_create(&labels).observe(run);
        }
        if let Some(wait) = job.wait_seconds {
            self.inner.wait_seconds.get_or_create(&labels).observe(wait);
        }
    }

    /// Set a project's queue depth.
    pub fn queue_depth(&self, project: &str, depth: usize) {
        self.inner
            .queue_depth
            .get_or_create(&vec![("project", project.to_string())])
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Set a process instance's restart count.
    pub fn restarts(&self, project: &str, process: &str, instance: u32, restarts: u32) {
        let labels = vec![
            ("project", project.to_string()),
            ("process", process.to_string()),
            ("instance", instance.to_string()),
        ];
        self.inner
            .restarts
            .get_or_create(&labels)
            .set(i64::from(restarts));
    }

    /// The samples a caller may see, in the OpenMetrics text format: those
    /// of projects for which `sees` holds, and the server-wide ones (HTTP
    /// requests) only when `server_wide`. A series' project is its
    /// `project` label.
    pub fn render_for(&self, sees: impl Fn(&str) -> bool, server_wide: bool) -> String {
        let mut all = String::new();
        {
            let registry = self
                .inner
                .registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Writing to a String cannot fail.
            let _ = encode(&mut all, &registry);
        }
        let mut out = String::with_capacity(all.len());
        for line in all.split_inclusive('\n') {
            let shown = line.starts_with('#') || project_label(line).map_or(server_wide, &sees);
            if shown {
                out.push_str(line);
            }
        }
        out
    }
}

/// The `project` label of a sample line, if it has one. Every label value
/// is a name the config checked (`a-z`, `0-9`, `-`, `_`), so no value can
/// hold a quote or a `project=` of its own.
fn project_label(line: &str) -> Option<&str> {
    let labels = &line[line.find('{')?..];
    let at = ["{project=\"", ",project=\""]
        .iter()
        .filter_map(|l| labels.find(l).map(|i| i + l.len()))
        .min()?;
    let value = &labels[at..];
    Some(&value[..value.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_sees_only_the_series_of_its_projects() {
        let m = Metrics::default();
        m.queue_depth("alpha", 1);
        m.queue_depth("beta", 2);
        m.restarts("alpha", "web", 0, 3);
        m.restarts("beta", "web", 0, 1);
        m.request(200);
        let alpha = m.render_for(|p| p == "alpha", false);
        assert!(
            alpha.contains("bosun_queue_depth{project=\"alpha\"} 1"),
            "{alpha}"
        );
        assert!(
            alpha.contains("bosun_process_restarts{project=\"alpha\""),
            "{alpha}"
        );
        assert!(!alpha.contains("project=\"beta\""), "{alpha}");
        assert!(!alpha.contains("bosun_http_requests_total{"), "{alpha}");
        let all = m.render_for(|_| true, true);
        assert!(
            all.contains("bosun_http_requests_total{status=\"200\"} 1"),
            "{all}"
        );
        assert!(all.ends_with("# EOF\n"), "{all}");
    }
}
