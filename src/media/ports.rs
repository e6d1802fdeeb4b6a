//! RTP port pool: hands out even ports from the configured range (RFC 3550 §11: RTP on an
//! even port, RTCP on the next odd one — we send no RTCP, but keeping the convention keeps
//! firewall rules and carrier SBCs that assume it happy).
//!
//! A lease returns its port when dropped. Hold it for the whole call, not just the playback:
//! the caller's RTP keeps arriving until the call is torn down, and a port reused too early
//! would feed that stray audio (and key presses) into the next call.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PortError {
    #[error("RTP port range contains no even port above 0")]
    Empty,
}

/// A shared pool; cloning shares the same ports.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: Arc<Mutex<VecDeque<u16>>>,
    capacity: usize,
}

impl PortPool {
    /// Builds the pool from a range such as `16384..=32767`; odd ports and 0 are skipped.
    pub fn new(range: RangeInclusive<u16>) -> Result<Self, PortError> {
        let free: VecDeque<u16> = range.filter(|p| *p != 0 && p % 2 == 0).collect();
        if free.is_empty() {
            return Err(PortError::Empty);
        }
        Ok(PortPool {
            capacity: free.len(),
            free: Arc::new(Mutex::new(free)),
        })
    }

    /// Takes a free port; `None` when all are leased (the SIP layer answers 503 with
    /// Retry-After).
    pub fn acquire(&self) -> Option<PortLease> {
        let port = lock(&self.free).pop_front()?;
        Some(PortLease {
            port,
            pool: Arc::clone(&self.free),
        })
    }

    /// Ports not currently leased.
    pub fn available(&self) -> usize {
        lock(&self.free).len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The critical sections cannot panic, so a poisoned lock still holds a consistent queue.
fn lock(m: &Mutex<VecDeque<u16>>) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One leased port; returned to the pool on drop.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<Mutex<VecDeque<u16>>>,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        // To the back of the queue: the least recently used port is handed out next, which
        // gives late packets of a finished call the longest time to stop arriving.
        lock(&self.pool).push_back(self.port);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_even_nonzero_ports_are_handed_out() {
        let pool = PortPool::new(0..=7).unwrap();
        assert_eq!(pool.capacity(), 3);
        let leases: Vec<PortLease> = std::iter::from_fn(|| pool.acquire()).collect();
        let ports: Vec<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(ports, [2, 4, 6]);
    }

    #[test]
    fn exhausted_pool_returns_none_until_a_lease_is_dropped() {
        let pool = PortPool::new(40000..=40003).unwrap();
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        assert_ne!(a.port(), b.port());
        assert!(pool.acquire().is_none());
        assert_eq!(pool.available(), 0);
        let freed = a.port();
        drop(a);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.acquire().map(|l| l.port()), Some(freed));
    }

    #[test]
    fn released_port_goes_to_the_back_of_the_queue() {
        let pool = PortPool::new(100..=105).unwrap();
        let first = pool.acquire().unwrap();
        assert_eq!(first.port(), 100);
        drop(first);
        let next: Vec<u16> = (0..3)
            .filter_map(|_| pool.acquire())
            .map(|l| l.port())
            .collect();
        // Each lease above is dropped right away, so 102 and 104 come before 100 is reused.
        assert_eq!(next, [102, 104, 100]);
    }

    #[test]
    fn clones_share_the_same_ports() {
        let pool = PortPool::new(2000..=2001).unwrap();
        let other = pool.clone();
        let _held = pool.acquire().unwrap();
        assert!(other.acquire().is_none());
    }

    #[test]
    fn range_without_even_ports_is_an_error() {
        assert_eq!(PortPool::new(5..=5).unwrap_err(), PortError::Empty);
        assert_eq!(PortPool::new(0..=1).unwrap_err(), PortError::Empty);
    }
}
