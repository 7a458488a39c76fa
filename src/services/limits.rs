//! Admission limits shared by the workers: the per-source-IP connection cap and the accept
//! rate's token bucket. Both are consulted once per accepted connection, never per message.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 64;

/// Open connections per source IP across all workers, capped.
#[derive(Debug)]
pub struct IpTable {
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
    hasher: RandomState,
    cap: u32,
}

impl IpTable {
    /// A table allowing `cap` connections per source address.
    pub fn new(cap: u32) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            cap,
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.shards[(self.hasher.hash_one(ip) as usize) % SHARDS]
    }

    /// Count one more connection from `ip`, unless it is at the cap.
    pub fn try_acquire(&self, ip: IpAddr) -> bool {
        let mut m = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.cap {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` ended.
    pub fn release(&self, ip: IpAddr) {
        let mut m = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Connections counted for `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let m = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        m.get(&ip).copied().unwrap_or(0)
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The server-wide limits every worker shares: the connection cap and the accept rate.
/// Each is touched once per accepted connection (and the count once per close), never per
/// message. Per-worker shares were wrong whenever SO_REUSEPORT spread connections unevenly:
/// with `--max-connections 200` one worker refused its 101st while the other had room.
#[derive(Debug)]
pub struct Global {
    open: std::sync::atomic::AtomicUsize,
    max: usize,
    bucket: Option<Mutex<TokenBucket>>,
}

impl Global {
    /// At most `max` WebSockets in the process; `rate` upgrades a second (0: no limit),
    /// with a burst of one second's worth.
    pub fn new(max: usize, rate: f64) -> Self {
        Self {
            open: std::sync::atomic::AtomicUsize::new(0),
            max,
            bucket: (rate > 0.0)
                .then(|| Mutex::new(TokenBucket::new(rate, rate.max(1.0), Instant::now()))),
        }
    }

    /// One more accepted connection within the rate?
    pub fn take_rate(&self, now: Instant) -> bool {
        self.bucket
            .as_ref()
            .is_none_or(|b| b.lock().unwrap_or_else(|p| p.into_inner()).try_take(now))
    }

    /// Count one more WebSocket, unless the process is at its cap.
    pub fn try_open(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    /// A WebSocket handed over from the previous process: counted whatever the cap (it was
    /// open before, under the same cap).
    pub fn adopt(&self) {
        self.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A counted WebSocket ended.
    pub fn close(&self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// WebSockets open in the process.
    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_global_cap_is_one_count_for_every_worker() {
        let g = std::sync::Arc::new(Global::new(200, 0.0));
        let opened: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..100).filter(|_| g.try_open()).count()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!((opened, g.open()), (200, 200));
        g.close();
        assert!(g.try_open() && !g.try_open());
        assert!(g.take_rate(Instant::now()), "no rate limit configured");
    }

    #[test]
    fn ip_cap_counts_and_releases() {
        let t = IpTable::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        assert!(t.try_acquire(a));
        assert!(t.try_acquire(a));
        assert!(!t.try_acquire(a));
        assert!(t.try_acquire(b));
        t.release(a);
        assert_eq!(t.count(a), 1);
        assert!(t.try_acquire(a));
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 2.0, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(160)));
        // Never more than the burst, however long it rests.
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take(later) && b.try_take(later) && !b.try_take(later));
    }
}
