//! Push to deploy: signed webhooks from git forges.
//!
//! A forge cannot send a bearer key; it proves a delivery with a secret
//! shared per project (`[projects.<p>.webhook]`). What bosun does with a
//! proven push (the HTTP side is `api::hooks`):
//!
//! - **The exact commit.** The action runs with `target = <after>`, the
//!   commit pushed, never "whatever the branch is now".
//! - **Answered at once.** The deploy is a normal job (one at a time per
//!   project, a bounded queue); the forge gets 202 and the job's id in
//!   milliseconds, well within its ~10 s timeout.
//! - **The newest push wins.** A push replaces a webhook's deploy of the
//!   same project that is still queued (the queued one ends `cancelled`,
//!   naming its replacement), so a burst of pushes deploys once, the last.
//! - **Nothing twice.** Deliveries are deduplicated ([`deliveries`]); a
//!   push of the commit already deployed, with no job of the project
//!   queued or running, is ignored; so is a redelivery of a push that a
//!   newer accepted push to its ref has superseded.
//! - **A proven delivery is never braked.** Only deliveries that fail their
//!   proof count against the brake and get its 429, so a stranger pointing
//!   a wrong secret at a tenant's hook from a forge's shared addresses
//!   cannot have that tenant's real pushes refused.
//! - **One at a time per project.** Deliveries of one project are decided
//!   in turn, so two copies of one delivery cannot both start a job.
//! - **Bounded.** At most [`MAX_BODIES`] bodies (each up to 25 MiB) are
//!   read at once, [`MAX_BODIES_PER_SOURCE`] from one source; a delivery
//!   waits up to [`BODY_PLACE_WAIT`] for a place, and its body is let go
//!   once its push is parsed, before the project's turn.

pub mod deliveries;
pub mod forge;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use globset::GlobMatcher;
use tokio::sync::OwnedMutexGuard;

use crate::config::{Config, HookSecret, branch_matcher};
pub use deliveries::{Deliveries, Delivery, DeliveryError, Seen, Verdict};
pub use forge::{Event, Forge, Push};

/// Jobs a webhook starts are requested by `webhook:<forge>`.
pub use crate::config::WEBHOOK_REQUESTER as REQUESTED_BY;

/// The largest body a webhook reads: GitHub caps its payloads at 25 MiB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// A body over [`MAX_BODY`] is still read (and dropped) up to this, so its
/// sender gets the 413 rather than a reset connection; one declared larger
/// is refused unread.
pub const DRAIN_MAX: usize = 64 * 1024 * 1024;

/// Bodies read at once, over all projects: 16 × 25 MiB at most in memory.
pub const MAX_BODIES: usize = 16;

/// How long a delivery waits for a place to read its body in, when all
/// are taken: forges wait about 10 s for their answer.
pub const BODY_PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Bodies read at once from one source (an IPv4 address or IPv6 /64), so
/// one client trickling bodies cannot take every place.
pub const MAX_BODIES_PER_SOURCE: usize = 2;

/// Secrets shorter than this are warned about: a forge's HMAC can be
/// attacked offline, and GitLab's token guessed online.
const SHORT_SECRET: usize = 16;

/// One project's webhook, as the config says.
pub struct HookSettings {
    /// The shared secret.
    pub secret: HookSecret,
    /// The action a push runs.
    pub action: String,
    /// The branch globs, as written.
    pub globs: Vec<String>,
    branches: Vec<GlobMatcher>,
}

impl HookSettings {
    /// Why `push` runs nothing, or `None` when it deploys.
    pub fn ignored(&self, push: &Push) -> Option<String> {
        if push.git_ref.starts_with("refs/tags/") {
            return Some(format!(
                "`{}` is a tag: only pushes to a branch deploy",
                push.git_ref
            ));
        }
        let Some(branch) = push.branch() else {
            return Some(format!("`{}` is not a branch", push.git_ref));
        };
        if push.deleted {
            return Some(format!("branch `{branch}` was deleted"));
        }
        if !self.branches.iter().any(|m| m.is_match(branch)) {
            return Some(format!(
                "branch `{branch}` is not one this webhook deploys ({})",
                self.globs.join(", ")
            ));
        }
        None
    }
}

/// The webhooks of every project, and what they share.
pub struct Hooks {
    settings: ArcSwap<BTreeMap<String, Arc<HookSettings>>>,
    /// Every delivery received.
    pub deliveries: Deliveries,
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Hooks {
    /// The webhooks of `config`, logging to `deliveries`.
    pub fn new(config: &Config, deliveries: Deliveries) -> Self {
        let hooks = Self {
            settings: ArcSwap::from_pointee(BTreeMap::new()),
            deliveries,
            turns: Mutex::new(HashMap::new()),
        };
        hooks.replace(config);
        hooks
    }

    /// Take `config`'s webhooks (a reload): secrets, branches and actions
    /// change for the next delivery; a project without one answers 404.
    pub fn replace(&self, config: &Config) {
        let settings = config
            .projects
            .iter()
            .filter_map(|(name, project)| {
                let hook = project.webhook.as_ref()?;
                if hook.secret.bytes().len() < SHORT_SECRET {
                    tracing::warn!(
                        project = %name,
                        "the webhook's secret is shorter than {SHORT_SECRET} bytes: make it 32 random ones (`openssl rand -hex 32`)"
                    );
                }
                let globs = hook.watched(project.git.branch.as_deref());
                // Checked at load; a glob that fails here matches nothing.
                let branches = globs
                    .iter()
                    .filter_map(|g| branch_matcher(g).ok())
                    .collect();
                Some((
                    name.clone(),
                    Arc::new(HookSettings {
                        secret: hook.secret.clone(),
                        action: hook.action.clone(),
                        globs,
                        branches,
                    }),
                ))
            })
            .collect::<BTreeMap<_, _>>();
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| settings.contains_key(name));
        self.settings.store(Arc::new(settings));
    }

    /// `project`'s webhook, if it has one.
    pub fn get(&self, project: &str) -> Option<Arc<HookSettings>> {
        self.settings.load().get(project).cloned()
    }

    /// `project`'s turn to decide a delivery.
    pub async fn turn(&self, project: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(project.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}
