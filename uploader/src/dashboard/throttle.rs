//! Wrong admin tokens are rationed: the `/login` form and the `Authorization: Bearer`
//! header are the two places a token is compared, and both ask [`Throttle::check`] first.
//!
//! - **Per client** (an IPv4 address, or an IPv6 /64): [`Limits::client_burst`] wrong
//!   tokens, then one more every [`Limits::client_every`]. Over it, the client gets 429
//!   with `Retry-After` and its token is not even compared, so a throttled guesser learns
//!   nothing. A right token forgets the client's failures.
//! - **Global**: [`Limits::global_burst`] wrong tokens from everyone, then one every
//!   [`Limits::global_every`], against guessing spread over many addresses.
//! - **No lockout of the operator**: only failures are counted, so a right token never
//!   uses up anything; sessions are never throttled; and the global budget does not apply
//!   to a client that presented the right token since the dashboard started, nor (with
//!   [`Limits::exempt_loopback`]) to loopback clients, so an attack from elsewhere cannot
//!   keep the operator out; the attacker's own address stays limited. Every wait is short
//!   (one refill step), so the dashboard answers again as soon as an attack stops.
//! - Bounded memory: at most [`Limits::max_clients`] clients are tracked (those back to a
//!   full budget are forgotten first; beyond that, new clients meet the global limit only)
//!   and at most [`Limits::max_trusted`] trusted ones.
//!
//! Written here rather than with a rate-limiting crate such as `governor`: those count
//! every request that is checked, while this counts failures only, needs an exemption from
//! the global budget for trusted clients, and runs on tokio's clock, so that tests pause
//! and advance time instead of sleeping.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The throttle's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Wrong tokens a client may present at once.
    pub client_burst: u32,
    /// One more wrong token per client after this long.
    pub client_every: Duration,
    /// Wrong tokens from everyone at once.
    pub global_burst: u32,
    /// One more wrong token from anyone after this long.
    pub global_every: Duration,
    /// Whether loopback clients are exempt from the global budget.
    pub exempt_loopback: bool,
    /// Clients tracked at most.
    pub max_clients: usize,
    /// Trusted clients remembered at most.
    pub max_trusted: usize,
}

impl Default for Limits {
    /// 10 wrong tokens per client, then one every 6 s (600 an hour); 100 from everyone,
    /// then one a second; loopback clients exempt from the global budget.
    fn default() -> Self {
        Limits {
            client_burst: 10,
            client_every: Duration::from_secs(6),
            global_burst: 100,
            global_every: Duration::from_secs(1),
            exempt_loopback: true,
            max_clients: 10_000,
            max_trusted: 1_000,
        }
    }
}

/// Who a client is, for counting: an IPv4 address, an IPv6 /64, or unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    Ip(IpAddr),
    Unknown,
}

/// The client's address as the throttle counts it (IPv4 mapped in IPv6 is IPv4).
pub fn client_ip(remote: Option<SocketAddr>) -> Option<IpAddr> {
    remote.map(|a| a.ip().to_canonical())
}

fn client(ip: Option<IpAddr>) -> Client {
    match ip.map(|i| i.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            Client::Ip(IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], 0, 0, 0, 0,
            )))
        }
        Some(ip) => Client::Ip(ip),
        None => Client::Unknown,
    }
}

/// A token bucket: `tokens` wrong tokens left at `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: u32, every: Duration) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64()
            / every.as_secs_f64().max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + gained).min(f64::from(burst));
        self.at = now;
    }

    /// How long until one wrong token may be presented.
    fn wait(&self, every: Duration) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            every.mul_f64(1.0 - self.tokens)
        }
    }

    fn spend(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

#[derive(Debug)]
struct State {
    clients: HashMap<Client, Bucket>,
    global: Bucket,
    trusted: HashSet<Client>,
}

/// The wrong-token throttle (see the module documentation).
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    state: Mutex<State>,
}

impl Throttle {
    /// A throttle with `limits`, every budget full.
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            state: Mutex::new(State {
                clients: HashMap::new(),
                global: Bucket::full(limits.global_burst, Instant::now()),
                trusted: HashSet::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the client at `ip` (counted as `c`) is spared the global budget.
    fn exempt(&self, s: &State, c: Client, ip: Option<IpAddr>) -> bool {
        s.trusted.contains(&c)
            || (self.limits.exempt_loopback && ip.is_some_and(|i| i.to_canonical().is_loopback()))
    }

    /// Whether a client at `ip` may present a token now; otherwise how long it must wait.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let l = self.limits;
        let now = Instant::now();
        let c = client(ip);
        let mut s = self.state();
        if let Some(b) = s.clients.get_mut(&c) {
            b.refill(now, l.client_burst, l.client_every);
            let wait = b.wait(l.client_every);
            if !wait.is_zero() {
                return Err(wait);
            }
        }
        if !self.exempt(&s, c, ip) {
            s.global.refill(now, l.global_burst, l.global_every);
            let wait = s.global.wait(l.global_every);
            if !wait.is_zero() {
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Counts a wrong token from `ip`.
    pub fn failure(&self, ip: Option<IpAddr>) {
        let l = self.limits;
        let now = Instant::now();
        let c = client(ip);
        let mut s = self.state();
        s.global.refill(now, l.global_burst, l.global_every);
        s.global.spend();
        if !s.clients.contains_key(&c) && s.clients.len() >= l.max_clients {
            // Forget the clients whose budget is full again.
            s.clients.retain(|_, b| {
                b.refill(now, l.client_burst, l.client_every);
                b.tokens < f64::from(l.client_burst)
            });
            if s.clients.len() >= l.max_clients {
                return;
            }
        }
        let b = s
            .clients
            .entry(c)
            .or_insert_with(|| Bucket::full(l.client_burst, now));
        b.refill(now, l.client_burst, l.client_every);
        b.spend();
    }

    /// Counts a right token from `ip`: its failures are forgotten and it is trusted (no
    /// global budget) from now on.
    pub fn success(&self, ip: Option<IpAddr>) {
        let c = client(ip);
        let mut s = self.state();
        s.clients.remove(&c);
        if s.trusted.len() < self.limits.max_trusted {
            s.trusted.insert(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// `times` wrong tokens from `client`.
    fn fail(t: &Throttle, client: Option<IpAddr>, times: usize) {
        for _ in 0..times {
            t.failure(client);
        }
    }

    /// The wait in whole seconds, rounded up as `Retry-After` is.
    fn wait(r: Result<(), Duration>) -> Option<u64> {
        r.err().map(|d| d.as_secs_f64().ceil() as u64)
    }

    fn limits() -> Limits {
        Limits {
            client_burst: 3,
            client_every: Duration::from_secs(10),
            global_burst: 5,
            global_every: Duration::from_secs(2),
            exempt_loopback: false,
            max_clients: 100,
            max_trusted: 10,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_is_limited_then_allowed_again() {
        let t = Throttle::new(limits());
        let a = ip("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(t.check(a), Ok(()));
            t.failure(a);
        }
        assert_eq!(wait(t.check(a)), Some(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(wait(t.check(a)), Some(6));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(t.check(a), Ok(()), "one more after one step");
        t.failure(a);
        assert!(t.check(a).is_err());
        // Another client is not affected.
        assert_eq!(t.check(ip("198.51.100.1")), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_clients_are_counted_per_64() {
        let t = Throttle::new(limits());
        for i in 1..=3 {
            t.failure(ip(&format!("2001:db8:1:2::{i}")));
        }
        assert!(t.check(ip("2001:db8:1:2:ffff::1")).is_err(), "same /64");
        assert_eq!(t.check(ip("2001:db8:1:3::1")), Ok(()), "another /64");
        // IPv4 mapped in IPv6 is the IPv4 client.
        fail(&t, ip("::ffff:192.0.2.1"), 3);
        assert!(t.check(ip("192.0.2.1")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_budget_spares_trusted_clients() {
        let t = Throttle::new(limits());
        let operator = ip("192.0.2.10");
        t.success(operator);
        // Five addresses, one wrong token each: the global budget is spent.
        for i in 1..=5 {
            let a = ip(&format!("203.0.113.{i}"));
            assert_eq!(t.check(a), Ok(()));
            t.failure(a);
        }
        assert_eq!(
            wait(t.check(ip("203.0.113.99"))),
            Some(2),
            "a new address meets the global limit"
        );
        assert_eq!(t.check(operator), Ok(()), "the operator is not locked out");
        // A failure of the operator's does not take its trust away.
        t.failure(operator);
        assert_eq!(t.check(operator), Ok(()));
        // The attack stops: one step later anyone may try again.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.check(ip("203.0.113.99")), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_right_token_forgets_the_failures() {
        let t = Throttle::new(limits());
        let a = ip("192.0.2.20");
        t.failure(a);
        t.failure(a);
        t.success(a);
        for _ in 0..3 {
            assert_eq!(t.check(a), Ok(()));
            t.failure(a);
        }
        assert!(t.check(a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn loopback_is_exempt_from_the_global_budget_when_configured() {
        let t = Throttle::new(Limits {
            exempt_loopback: true,
            ..limits()
        });
        for i in 1..=5 {
            t.failure(ip(&format!("203.0.113.{i}")));
        }
        assert!(t.check(ip("203.0.113.99")).is_err());
        assert_eq!(t.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(t.check(ip("::1")), Ok(()));
        // ... but not from its own.
        fail(&t, ip("127.0.0.1"), 3);
        assert!(t.check(ip("127.0.0.1")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let t = Throttle::new(Limits {
            max_clients: 4,
            max_trusted: 2,
            global_burst: 1_000,
            ..limits()
        });
        for i in 0..50 {
            t.failure(ip(&format!("198.51.100.{i}")));
            t.success(ip(&format!("192.0.2.{i}")));
        }
        {
            let s = t.state();
            assert!(s.clients.len() <= 4);
            assert!(s.trusted.len() <= 2);
        }
        // Clients back to a full budget make room.
        tokio::time::advance(Duration::from_secs(60)).await;
        fail(&t, ip("203.0.113.200"), 3);
        assert!(t.check(ip("203.0.113.200")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_clients_share_one_budget() {
        let t = Throttle::new(limits());
        fail(&t, None, 3);
        assert!(t.check(None).is_err());
    }
}
