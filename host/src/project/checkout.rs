//! Whether a project's first checkout (`git.clone`) is done.
//!
//! A clone can take minutes, and one tenant's slow or unreachable remote
//! must not hold back the others: bosun serves the API and starts every
//! other project at once, and clones in the background. What needs the
//! checkout waits for it: that project's processes before their first
//! start, and its jobs before the first one runs. Done means tried: a
//! clone that failed is logged, and the processes then fail to start in
//! the dir as they would without it.

use tokio::sync::watch;

/// A project's first checkout, as those who wait for it see it.
#[derive(Clone)]
pub struct Checkout(watch::Receiver<bool>);

/// The side that says the checkout is done.
pub struct CheckoutDone(watch::Sender<bool>);

/// A checkout still to come.
pub fn pending() -> (CheckoutDone, Checkout) {
    let (tx, rx) = watch::channel(false);
    (CheckoutDone(tx), Checkout(rx))
}

impl Checkout {
    /// Whether it is done.
    pub fn is_done(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once it is done (or abandoned: the clone task is gone).
    pub async fn done(&mut self) {
        let _ = self.0.wait_for(|done| *done).await;
    }
}

impl CheckoutDone {
    /// Tell the waiters.
    pub fn done(self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_go_on_once_done_or_abandoned() {
        let (done, mut checkout) = pending();
        assert!(!checkout.is_done());
        let waiter = tokio::spawn({
            let mut c = checkout.clone();
            async move { c.done().await }
        });
        done.done();
        waiter.await.expect("waiter");
        checkout.done().await;
        let (abandoned, mut checkout) = pending();
        drop(abandoned);
        checkout.done().await;
    }
}
