//! The sockets bosun listens on for its processes (`sockets = […]`), the
//! systemd way: bosun binds each address once and keeps it, and every
//! instance of the process gets the same listening socket.
//!
//! One socket shared by every instance, and held by bosun, is what makes a
//! restart drop nothing. The kernel queues connections on it whoever is
//! accepting: while an instance restarts, its siblings (or its own
//! replacement, started before it is stopped) take them from the same
//! queue. Instances that each bind the port with `SO_REUSEPORT` have one
//! queue each instead, and Linux resets the connections waiting in a
//! closing one (unless `net.ipv4.tcp_migrate_req` is set).
//!
//! A socket lives as long as a process's spec names it: a reload that keeps
//! the address keeps the socket, and an upgrade hands it to the next image.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use socket2::{Domain, Socket, Type};

/// How many connections may wait on a socket nobody is accepting from.
const BACKLOG: i32 = 1024;

/// Every socket bound for a process, by its owner (`project/process`) and
/// address: an address that moves to another process (a reload) is bound
/// anew, never handed over with what the first owner's programs may still
/// hold of it.
#[derive(Default)]
pub(crate) struct Sockets {
    bound: Mutex<BTreeMap<(String, SocketAddr), Weak<OwnedFd>>>,
    /// One per owner: its instances' replacements probe one at a time (a
    /// probe holds the other instances still, and must not thaw what
    /// another probe holds).
    probes: Mutex<BTreeMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Sockets {
    /// `owner`'s listening sockets for `addrs`: the ones already bound,
    /// else bound now. An error names the address and why.
    pub(crate) fn get(
        &self,
        owner: &str,
        addrs: &[SocketAddr],
    ) -> Result<Vec<Arc<OwnedFd>>, String> {
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        bound.retain(|_, socket| socket.strong_count() > 0);
        addrs
            .iter()
            .map(|addr| {
                let key = (owner.to_string(), *addr);
                if let Some(socket) = bound.get(&key).and_then(Weak::upgrade) {
                    return Ok(socket);
                }
                let socket = Arc::new(bind(*addr).map_err(|e| format!("binding {addr}: {e}"))?);
                bound.insert(key, Arc::downgrade(&socket));
                Ok(socket)
            })
            .collect()
    }

    /// Take over `owner`'s `socket`, listening on `addr`, from the
    /// previous image. The caller keeps the returned handle until the
    /// specs have taken it.
    pub(crate) fn adopt(&self, owner: String, addr: SocketAddr, socket: OwnedFd) -> Arc<OwnedFd> {
        let socket = Arc::new(socket);
        self.bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((owner, addr), Arc::downgrade(&socket));
        socket
    }

    /// Every socket in use, with its owner, for an upgrade to hand over.
    pub(crate) fn in_use(&self) -> Vec<(String, SocketAddr, Arc<OwnedFd>)> {
        self.bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|((owner, addr), socket)| Some((owner.clone(), *addr, socket.upgrade()?)))
            .collect()
    }
}

/// One instance's sockets: held once bound, so they outlive its runs; a
/// bind that failed (the address taken by another program) is tried
/// again at its next start.
pub(crate) struct InstanceSockets {
    registry: Arc<Sockets>,
    owner: String,
    addrs: Vec<SocketAddr>,
    /// Taken while a replacement of this process is probed.
    pub(crate) probing: Arc<tokio::sync::Mutex<()>>,
    held: Mutex<Option<Vec<Arc<OwnedFd>>>>,
}

impl InstanceSockets {
    /// `owner`'s sockets on `addrs`, bound now if they can be (else at
    /// the first start), with the owner's probe lock.
    pub(crate) fn new(registry: &Arc<Sockets>, owner: String, addrs: &[SocketAddr]) -> Self {
        let held = registry.get(&owner, addrs).ok();
        let probing = {
            let mut probes = registry
                .probes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            probes.retain(|_, lock| lock.strong_count() > 0);
            match probes.get(&owner).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::default();
                    probes.insert(owner.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        Self {
            registry: registry.clone(),
            probing,
            owner,
            addrs: addrs.to_vec(),
            held: Mutex::new(held),
        }
    }

    /// Whether there are any.
    pub(crate) fn any(&self) -> bool {
        !self.addrs.is_empty()
    }

    /// Copies of the sockets for a program to inherit (bound now if they
    /// were not yet), or why they cannot be had.
    pub(crate) fn for_program(&self) -> Result<Vec<OwnedFd>, String> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_none() {
            *held = Some(self.registry.get(&self.owner, &self.addrs)?);
        }
        held.iter()
            .flatten()
            .map(|s| s.try_clone().map_err(|e| format!("copying a socket: {e}")))
            .collect()
    }

    /// The held socket a connection to `to` reaches, if any: the same
    /// port and family, on that address or on the unspecified one.
    pub(crate) fn listening_on(&self, to: SocketAddr) -> Option<Arc<OwnedFd>> {
        let at = self.addrs.iter().position(|a| {
            a.port() == to.port()
                && a.is_ipv4() == to.is_ipv4()
                && (a.ip() == to.ip() || a.ip().is_unspecified())
        })?;
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.as_ref()?.get(at).cloned()
    }
}

impl std::fmt::Debug for InstanceSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.addrs).finish()
    }
}

/// A listening TCP socket on `addr` (close-on-exec, blocking, as socket
/// activation hands them).
fn bind(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
