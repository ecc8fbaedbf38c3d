//! What each git forge sends, and how it signs it.
//!
//! The forge is told by its headers, Gitea and Forgejo first: they also
//! send GitHub's (`X-GitHub-Event`, even `X-Hub-Signature-256` on newer
//! versions), and their form-encoded bodies are signed differently.
//!
//! | forge | proof | event | delivery id |
//! |---|---|---|---|
//! | GitHub | `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body | `X-GitHub-Event` | `X-GitHub-Delivery` |
//! | GitLab | `X-Gitlab-Token`: the secret itself | `X-Gitlab-Event` | `Idempotency-Key`, `X-Gitlab-Event-UUID` |
//! | Gitea, Forgejo | `X-Gitea-Signature` / `X-Forgejo-Signature`: bare hex HMAC of the JSON (inside a form body too) | `X-Gitea-Event` / `X-Forgejo-Event` | `X-Gitea-Delivery` / `X-Forgejo-Delivery` |
//! | Bitbucket Cloud | `X-Hub-Signature: sha256=<hex>` of the raw body | `X-Event-Key` | `X-Request-UUID` |
//!
//! Every comparison is constant-time: HMACs through `Mac::verify_slice`,
//! GitLab's token as SHA-256 digests (so not even its length shows).
//! Nothing here says what was expected. Only a verified body is parsed.

use std::borrow::Cow;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A git forge bosun takes pushes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// github.com and GitHub Enterprise.
    GitHub,
    /// gitlab.com and self-managed GitLab.
    GitLab,
    /// Gitea.
    Gitea,
    /// Forgejo (Codeberg).
    Forgejo,
    /// Bitbucket Cloud.
    Bitbucket,
}

impl Forge {
    /// Its name in answers, the deliveries log and job records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
            Self::Bitbucket => "bitbucket",
        }
    }

    /// The forge whose headers `headers` carries, if any.
    pub fn identify(headers: &HeaderMap) -> Option<Self> {
        let has = |names: &[&str]| names.iter().any(|n| headers.contains_key(*n));
        if has(&[
            "x-forgejo-event",
            "x-forgejo-signature",
            "x-forgejo-delivery",
        ]) {
            Some(Self::Forgejo)
        } else if has(&["x-gitea-event", "x-gitea-signature", "x-gitea-delivery"]) {
            Some(Self::Gitea)
        } else if has(&["x-gitlab-event", "x-gitlab-token"]) {
            Some(Self::GitLab)
        } else if has(&["x-event-key"]) {
            Some(Self::Bitbucket)
        } else if has(&["x-github-event", "x-hub-signature-256"]) {
            Some(Self::GitHub)
        } else {
            None
        }
    }

    /// The event's name as the forge gives it (`push`, `Push Hook`,
    /// `repo:push`); empty when it gives none.
    pub fn event(self, headers: &HeaderMap) -> String {
        let name = match self {
            Self::GitHub => "x-github-event",
            Self::GitLab => "x-gitlab-event",
            Self::Gitea => "x-gitea-event",
            Self::Forgejo => "x-forgejo-event",
            Self::Bitbucket => "x-event-key",
        };
        printable(header(headers, name).unwrap_or_default())
    }

    /// The delivery's id as the forge gives it, else `None`.
    pub fn delivery(self, headers: &HeaderMap) -> Option<String> {
        let names: &[&str] = match self {
            Self::GitHub => &["x-github-delivery"],
            Self::GitLab => &["idempotency-key", "x-gitlab-event-uuid"],
            Self::Gitea => &["x-gitea-delivery"],
            Self::Forgejo => &["x-forgejo-delivery", "x-gitea-delivery"],
            Self::Bitbucket => &["x-request-uuid"],
        };
        names
            .iter()
            .find_map(|n| header(headers, n))
            .map(printable)
            .filter(|id| !id.is_empty())
    }

    /// Check the delivery's proof against `secret`, and return its JSON
    /// payload (taken out of a form body where the forge sends one).
    /// `None` says only "not proven": missing, malformed or wrong alike.
    pub fn verify<'a>(
        self,
        headers: &HeaderMap,
        body: &'a [u8],
        secret: &[u8],
    ) -> Option<Cow<'a, [u8]>> {
        match self {
            Self::GitHub | Self::Bitbucket => {
                let name = match self {
                    Self::GitHub => "x-hub-signature-256",
                    _ => "x-hub-signature",
                };
                let sig = hex_digest(header(headers, name)?.strip_prefix("sha256=")?)?;
                if !hmac_matches(secret, body, &sig) {
                    return None;
                }
                json_of(headers, body)
            }
            Self::Gitea | Self::Forgejo => {
                let name = match self {
                    Self::Forgejo if headers.contains_key("x-forgejo-signature") => {
                        "x-forgejo-signature"
                    }
                    _ => "x-gitea-signature",
                };
                let sig = hex_digest(header(headers, name)?)?;
                let payload = json_of(headers, body)?;
                hmac_matches(secret, &payload, &sig).then_some(payload)
            }
            Self::GitLab => {
                let token = header(headers, "x-gitlab-token")?;
                let same: bool = Sha256::digest(token.as_bytes())
                    .ct_eq(&Sha256::digest(secret))
                    .into();
                same.then_some(Cow::Borrowed(body))
            }
        }
    }

    /// What a proven payload of event `event` says.
    pub fn parse(self, event: &str, payload: &[u8]) -> Result<Event, String> {
        let push = match (self, event) {
            (Self::GitHub, "ping") | (Self::Bitbucket, "diagnostics:ping") => {
                return Ok(Event::Ping);
            }
            (Self::GitHub | Self::Gitea | Self::Forgejo, "push")
            | (Self::GitLab, "Push Hook" | "Tag Push Hook") => {
                let p: HubPush = json(payload)?;
                let repository = match self {
                    Self::GitLab => p.project.and_then(|r| r.path_with_namespace),
                    _ => p.repository.and_then(|r| r.full_name),
                };
                let deleted = p.deleted.unwrap_or(false) || is_zero(&p.after);
                vec![Push::new(
                    self,
                    p.git_ref,
                    p.before.unwrap_or_default(),
                    p.after,
                    deleted,
                    p.forced.unwrap_or(false),
                    repository,
                )?]
            }
            (Self::Bitbucket, "repo:push") => {
                let p: BitbucketPush = json(payload)?;
                let repository = p.repository.and_then(|r| r.full_name);
                p.push
                    .changes
                    .into_iter()
                    .map(|c| c.normalize(repository.clone()))
                    .collect::<Result<_, _>>()?
            }
            _ => return Ok(Event::Other),
        };
        Ok(Event::Push(push))
    }
}

/// What a proven delivery says.
#[derive(Debug)]
pub enum Event {
    /// "Is this hook set up?": answered 200.
    Ping,
    /// One push, or (Bitbucket) one per ref the push changed.
    Push(Vec<Push>),
    /// Any other event: answered 202 `ignored`.
    Other,
}

/// A push, the same whichever forge sent it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Push {
    /// The forge.
    pub forge: &'static str,
    /// The full ref pushed (`refs/heads/main`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit the ref was at before (zeros for a new ref).
    pub before: String,
    /// The commit pushed (zeros when the ref was deleted).
    pub after: String,
    /// The push deleted the ref.
    pub deleted: bool,
    /// The push was forced (where the forge says so).
    pub forced: bool,
    /// The repository's full name, as the forge gives it.
    pub repository: Option<String>,
}

impl Push {
    fn new(
        forge: Forge,
        git_ref: String,
        before: String,
        after: String,
        deleted: bool,
        forced: bool,
        repository: Option<String>,
    ) -> Result<Self, String> {
        if git_ref.is_empty() || git_ref.len() > 1024 || git_ref.chars().any(char::is_control) {
            return Err("the push names no valid ref".into());
        }
        for (what, id) in [("before", &before), ("after", &after)] {
            if !(id.is_empty() || is_commit_id(id)) {
                return Err(format!("the push's `{what}` is not a commit id"));
            }
        }
        if !deleted && !is_commit_id(&after) {
            return Err("the push's `after` is not a commit id".into());
        }
        Ok(Self {
            forge: forge.as_str(),
            git_ref,
            before,
            after,
            deleted,
            forced,
            repository: repository.map(|r| printable(&r)),
        })
    }

    /// The branch pushed, when the ref is one.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }
}

#[derive(Deserialize)]
struct HubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    #[serde(default)]
    after: String,
    deleted: Option<bool>,
    forced: Option<bool>,
    repository: Option<Repository>,
    project: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
    path_with_namespace: Option<String>,
}

#[derive(Deserialize)]
struct BitbucketPush {
    push: BitbucketChanges,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct BitbucketChanges {
    changes: Vec<BitbucketChange>,
}

#[derive(Deserialize)]
struct BitbucketChange {
    old: Option<BitbucketRef>,
    new: Option<BitbucketRef>,
    #[serde(default)]
    forced: bool,
}

#[derive(Deserialize)]
struct BitbucketRef {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    target: BitbucketTarget,
}

#[derive(Deserialize)]
struct BitbucketTarget {
    hash: String,
}

impl BitbucketChange {
    fn normalize(self, repository: Option<String>) -> Result<Push, String> {
        let named = self
            .new
            .as_ref()
            .or(self.old.as_ref())
            .ok_or("a change has neither an old nor a new ref")?;
        let git_ref = match named.kind.as_str() {
            "branch" | "named_branch" => format!("refs/heads/{}", named.name),
            "tag" | "annotated_tag" => format!("refs/tags/{}", named.name),
            other => format!("refs/{}/{}", printable(other), named.name),
        };
        let hash = |r: Option<BitbucketRef>| r.map(|r| r.target.hash).unwrap_or_default();
        let deleted = self.new.is_none();
        Push::new(
            Forge::Bitbucket,
            git_ref,
            hash(self.old),
            hash(self.new),
            deleted,
            self.forced,
            repository,
        )
    }
}

fn json<'de, T: Deserialize<'de>>(payload: &'de [u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| {
        format!(
            "the payload is not a push as this forge sends it: {}",
            json_problem(&e)
        )
    })
}

/// A serde_json error without the payload's own text (it may quote it).
fn json_problem(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// The JSON of a delivery: the body, or its `payload` field when the body
/// is a form (GitHub's default, Gitea's option).
fn json_of<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    let form = header(headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Some(Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn hmac_matches(secret: &[u8], message: &[u8], sig: &[u8; 32]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(sig).is_ok()
}

/// A full SHA-1 or SHA-256 commit id.
fn is_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_zero(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// Header and payload text made safe to store and show: printable ASCII,
/// at most 128 characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn githubs_published_test_vector_verifies() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = signed_headers(&[
            ("x-github-event", "push".into()),
            ("x-hub-signature-256", sig.into()),
        ]);
        assert_eq!(Forge::identify(&h), Some(Forge::GitHub));
        assert!(Forge::GitHub.verify(&h, body, secret).is_some());
        assert!(Forge::GitHub.verify(&h, b"Hello, World?", secret).is_none());
        assert!(Forge::GitHub.verify(&h, body, b"another secret").is_none());
    }

    #[test]
    fn gitea_is_told_apart_from_github_whose_headers_it_also_sends() {
        let h = signed_headers(&[
            ("x-github-event", "push".into()),
            ("x-gitea-event", "push".into()),
        ]);
        assert_eq!(Forge::identify(&h), Some(Forge::Gitea));
        let h = signed_headers(&[
            ("x-gitea-event", "push".into()),
            ("x-forgejo-event", "push".into()),
        ]);
        assert_eq!(Forge::identify(&h), Some(Forge::Forgejo));
    }

    #[test]
    fn gitlabs_token_must_be_the_secret() {
        let h = signed_headers(&[("x-gitlab-token", "s3cret".into())]);
        assert!(Forge::GitLab.verify(&h, b"{}", b"s3cret").is_some());
        assert!(Forge::GitLab.verify(&h, b"{}", b"s3cret!").is_none());
        assert!(
            Forge::GitLab
                .verify(&HeaderMap::new(), b"{}", b"s3cret")
                .is_none()
        );
    }

    #[test]
    fn pushes_need_real_commit_ids() {
        let body = br#"{"ref":"refs/heads/main","before":"x","after":"$(reboot)"}"#;
        assert!(Forge::GitHub.parse("push", body).is_err());
        let zero = "0".repeat(40);
        let body = format!(
            r#"{{"ref":"refs/heads/old","before":"{}","after":"{zero}"}}"#,
            "a".repeat(40)
        );
        let Ok(Event::Push(p)) = Forge::Gitea.parse("push", body.as_bytes()) else {
            panic!("a branch deletion parses");
        };
        assert!(p[0].deleted);
    }
}
