//! Steady load for the tests where no request may fail (reloads, upgrades):
//! 4 clients, each opening a new connection per request, as the issue's
//! measurements did, until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server::ADMIN;

/// Clients asking `bosun` as the admin key until [`Load::none_failed`].
pub struct Load {
    stop: CancellationToken,
    clients: Vec<JoinHandle<(u32, Vec<String>)>>,
    answered: Arc<AtomicU32>,
}

impl Load {
    /// Start 4 clients on `url`, half asking `paths[0]`, half `paths[1]`.
    pub fn start(url: &str, paths: [&'static str; 2]) -> Self {
        let stop = CancellationToken::new();
        let answered = Arc::new(AtomicU32::new(0));
        let clients = (0..4)
            .map(|i| {
                let (stop, url, path) = (stop.clone(), url.to_string(), paths[i % 2]);
                let answered = answered.clone();
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .pool_max_idle_per_host(0)
                        .timeout(Duration::from_secs(60))
                        .build()
                        .expect("client");
                    let (mut ok, mut failed) = (0u32, Vec::new());
                    while !stop.is_cancelled() {
                        let asked = http.get(format!("{url}{path}")).bearer_auth(ADMIN);
                        match asked.send().await {
                            Ok(r) if r.status().is_success() => {
                                ok += 1;
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failed.push(r.status().to_string()),
                            Err(e) => failed.push(format!("{e:?}")),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Self {
            stop,
            clients,
            answered,
        }
    }

    /// Wait until `n` more requests have been answered than now, so the
    /// load surely overlaps what came before and what comes next.
    pub async fn answered(&self, n: u32) {
        let target = self.answered.load(Ordering::Relaxed) + n;
        super::until("requests answered under load", async || {
            (self.answered.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }

    /// Stop the clients; fail if any request failed, or none was answered.
    pub async fn none_failed(self) {
        self.stop.cancel();
        let mut total = 0;
        for client in self.clients {
            let (ok, failed) = client.await.expect("client");
            assert!(
                failed.is_empty(),
                "{} failed, e.g. {:?}",
                failed.len(),
                &failed[..failed.len().min(5)]
            );
            total += ok;
        }
        assert!(total > 0, "no request was answered");
        eprintln!("load: {total} requests answered, none failed");
    }
}
