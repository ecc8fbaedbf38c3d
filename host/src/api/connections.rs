//! Open connections, overall and per source. Each costs a file descriptor
//! that spawns, logs and the job store need too, so there are at most
//! `max_connections` of them, and at most `max_connections_per_address`
//! from one source, so one client flooding the door still leaves room for
//! everyone else. A source is an IPv4 address or an IPv6 /64: one host is
//! commonly given a whole /64, and a fresh address per connection must not
//! buy a fresh share. Webhooks count the bodies they read with a set of
//! slots of their own, in the same way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServerConfig;

/// The source an address counts as.
pub fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The connection slots.
pub struct Connections {
    total: Arc<Semaphore>,
    max: usize,
    per_source: usize,
    /// Connections open per source; a source leaves when its last closes,
    /// so this never holds more than `max` entries.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `max_connections` are open.
    Server,
    /// Its source has `max_connections_per_address` open.
    Source,
}

/// One open connection; its slot is given back on drop.
pub struct Slot {
    owner: Arc<Connections>,
    source: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Connections {
    /// The limits of `server`.
    pub fn new(server: &ServerConfig) -> Arc<Self> {
        Self::with_limits(server.max_connections, server.max_connections_per_address)
    }

    /// `max` slots, at most `per_source` of them for one source. (Webhooks
    /// use a set of their own for the bodies they read.)
    pub fn with_limits(max: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max)),
            max,
            per_source,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`, if there is one.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let source = source(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = open.get(&source).copied().unwrap_or(0);
        if mine >= self.per_source {
            return Err(Full::Source);
        }
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Server)?;
        Ok(self.slot(&mut open, source, permit))
    }

    /// [`Connections::admit`], waiting up to `wait` for a slot when all are
    /// taken (a source at its share is refused at once).
    pub async fn admit_within(self: &Arc<Self>, ip: IpAddr, wait: Duration) -> Result<Slot, Full> {
        match self.admit(ip) {
            Err(Full::Server) => {}
            admitted => return admitted,
        }
        let permit = tokio::time::timeout(wait, self.total.clone().acquire_owned())
            .await
            .map_err(|_| Full::Server)?
            .map_err(|_| Full::Server)?;
        let source = source(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.get(&source).copied().unwrap_or(0) >= self.per_source {
            return Err(Full::Source);
        }
        Ok(self.slot(&mut open, source, permit))
    }

    /// Count `permit` against `source`, as a slot.
    fn slot(
        self: &Arc<Self>,
        open: &mut HashMap<IpAddr, usize>,
        source: IpAddr,
        permit: OwnedSemaphorePermit,
    ) -> Slot {
        *open.entry(source).or_insert(0) += 1;
        Slot {
            owner: self.clone(),
            source,
            _permit: permit,
        }
    }

    /// Resolves once every connection has closed.
    pub async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.total.acquire_many(all).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        super::count_down(&mut open, &self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let c = Connections::new(&ServerConfig {
            max_connections: 3,
            max_connections_per_address: 2,
            ..ServerConfig::default()
        });
        let a1 = c.admit(ip("2001:db8::1")).expect("a1");
        let _a2 = c.admit(ip("2001:db8::2")).expect("a2");
        assert_eq!(c.admit(ip("2001:db8::3")).err(), Some(Full::Source));
        let _b = c.admit(ip("192.0.2.7")).expect("another source");
        assert_eq!(c.admit(ip("192.0.2.8")).err(), Some(Full::Server));
        drop(a1);
        c.admit(ip("192.0.2.8")).expect("a slot was given back");
        assert_eq!(source(ip("::ffff:192.0.2.8")), ip("192.0.2.8"));
    }

    #[tokio::test]
    async fn a_waiting_admit_takes_the_slot_given_back_but_never_a_sources_share() {
        let c = Connections::with_limits(2, 1);
        let held = c.admit(ip("192.0.2.1")).expect("first");
        let wait = Duration::from_secs(30);
        let full = c.admit_within(ip("192.0.2.1"), wait).await;
        assert_eq!(full.err(), Some(Full::Source), "refused at once");
        let _other = c.admit(ip("192.0.2.2")).expect("second source");
        let short = c
            .admit_within(ip("192.0.2.3"), Duration::from_millis(10))
            .await;
        assert_eq!(short.err(), Some(Full::Server));
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.admit_within(ip("192.0.2.3"), wait).await.map(drop) }
        });
        drop(held);
        assert_eq!(waiting.await.expect("task"), Ok(()));
    }
}
