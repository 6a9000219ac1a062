//! Login abuse resistance and password changes.
//!
//! - **Per source address**: after [`ThrottleConfig::addr_free`] failures an address is
//!   refused with 429 and `Retry-After` — at once, without hashing — for a window that doubles
//!   with every further failure (up to [`ThrottleConfig::addr_max`]). Attempts in flight count,
//!   so a burst cannot slip past the limit before the first failure is known.
//! - **Per user**: after [`ThrottleConfig::user_free`] failures, each further *failure* for that
//!   user is answered after a growing delay (an async sleep: no worker is held). A correct
//!   password is never delayed, so an attacker hammering `root` from one address does not lock
//!   root out elsewhere.
//! - **Bounded hashing**: argon2 runs on a fixed pool of threads (one per core) with a short
//!   queue; beyond it the answer is 503 with `Retry-After` at once. A flood can neither starve
//!   the daemon's workers nor grow its memory (each argon2 run holds ~19 MiB, on a fixed set of
//!   threads).
//! - Every failure is logged as `authentication failure; rhost=ADDR user=USER msg=…` (the form
//!   fail2ban filters match; see docs/hostd.md).
//!
//! Counters forget an address or user after [`ThrottleConfig::forget`] without failures, and
//! the tables are bounded ([`ThrottleConfig::max_entries`]); IPv6 addresses count per /64.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_api::auth::{LoginRequest, LoginResponse};
use keel_api::password::PasswordChange;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::Node;

/// The remote address of a request's connection (axum's `ConnectInfo`); the unspecified
/// address when the server was started without it (unit tests).
pub fn remote_ip(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

// ------------------------------------------------------------------ hashing pool

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads for password hashing with a bounded queue.
pub struct HashPool {
    tx: SyncSender<Job>,
}

impl HashPool {
    /// `workers` threads, at most `queue` jobs waiting.
    pub fn new(workers: usize, queue: usize) -> HashPool {
        release_large_allocations();
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("keel-pwhash-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        HashPool { tx }
    }

    /// One worker per core, twice as many jobs waiting.
    pub fn for_this_host() -> HashPool {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        HashPool::new(n, 2 * n)
    }

    /// Run `f` on the pool; 503 at once when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::Busy {
                    message: "too many password checks in progress: try again in a moment".into(),
                    retry_after_s: 1,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Internal("the password hashing pool is gone".into()))
            }
        }
        rx.await
            .map_err(|_| Error::Internal("a password hashing job failed".into()))
    }
}

/// Each argon2 run allocates its memory (19 MiB by default) and frees it. glibc's malloc
/// raises its mmap threshold when such a block is freed and from then on serves it from
/// per-thread arenas, which keep the memory: a few dozen logins left hostd ~250 MB bigger.
/// A fixed threshold makes every large block a mapping of its own, returned on free.
#[allow(unsafe_code)]
fn release_large_allocations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets a malloc tunable; it is called once, before the pool runs.
        unsafe {
            if libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) != 1 {
                tracing::warn!("mallopt(M_MMAP_THRESHOLD) failed: argon2 memory may be retained");
            }
        }
    });
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        match job {
            // a panicking job drops its reply (the caller sees an error); the thread lives on
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

// ------------------------------------------------------------------ throttle

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures an address may have before it is refused for a while.
    pub addr_free: u32,
    /// Attempts an address may have in flight at once (its share of the hashing pool).
    pub addr_concurrent: u32,
    /// The first refusal window; it doubles with each further failure.
    pub addr_base: Duration,
    pub addr_max: Duration,
    /// Failures a user may have before further failures are delayed.
    pub user_free: u32,
    /// The first delay; it doubles with each further failure.
    pub user_base: Duration,
    pub user_max: Duration,
    /// Counters are forgotten this long after their last failure.
    pub forget: Duration,
    /// Addresses (and users) tracked at most.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            addr_free: 5,
            addr_concurrent: 2,
            addr_base: Duration::from_secs(1),
            addr_max: Duration::from_secs(15 * 60),
            user_free: 3,
            user_base: Duration::from_millis(250),
            user_max: Duration::from_secs(8),
            forget: Duration::from_secs(15 * 60),
            max_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
struct AddrEntry {
    failures: u32,
    in_flight: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

#[derive(Debug, Clone)]
struct UserEntry {
    failures: u32,
    last: Instant,
}

#[derive(Default)]
struct Tables {
    addrs: HashMap<IpAddr, AddrEntry>,
    users: HashMap<String, UserEntry>,
}

/// Failed-login bookkeeping per source address and per user.
#[derive(Default)]
pub struct Throttle {
    cfg: ThrottleConfig,
    t: Mutex<Tables>,
}

/// The key of an address: IPv4 (and IPv4-mapped IPv6) as is, IPv6 by its /64.
fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn doubling(base: Duration, max: Duration, steps: u32) -> Duration {
    base.checked_mul(1u32 << steps.min(20))
        .unwrap_or(max)
        .min(max)
}

/// An attempt admitted by [`Throttle::begin`]; counted in flight until it ends.
pub struct Attempt<'a> {
    th: &'a Throttle,
    key: IpAddr,
    done: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.th.end(self.key, None, Instant::now());
        }
    }
}

impl Attempt<'_> {
    /// The password was wrong: count it for the address and `user`; returns how long to wait
    /// before answering.
    pub fn failed(self, user: &str) -> Duration {
        self.failed_at(user, Instant::now())
    }

    fn failed_at(mut self, user: &str, now: Instant) -> Duration {
        self.done = true;
        self.th.end(self.key, Some(user), now)
    }

    /// The password was right. Neither counter starts again: both are forgotten only with time,
    /// so a valid account cannot be used to keep guessing another's password, and an attacker's
    /// failures keep costing them even after the real user logged in (whose right passwords are
    /// never delayed).
    pub fn succeeded(mut self) {
        self.done = true;
        self.th.end(self.key, None, Instant::now());
    }
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle {
            cfg,
            t: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.t.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit an attempt from `ip`, or refuse it (429) with the seconds to wait.
    pub fn begin(&self, ip: IpAddr) -> std::result::Result<Attempt<'_>, u64> {
        self.begin_at(ip, Instant::now())
    }

    fn begin_at(&self, ip: IpAddr, now: Instant) -> std::result::Result<Attempt<'_>, u64> {
        let key = addr_key(ip);
        let cfg = &self.cfg;
        let mut t = self.lock();
        prune(&mut t.addrs, cfg, now, |e| e.last, |e| e.in_flight > 0);
        let e = t.addrs.entry(key).or_insert(AddrEntry {
            failures: 0,
            in_flight: 0,
            blocked_until: None,
            last: now,
        });
        if now.saturating_duration_since(e.last) > cfg.forget && e.in_flight == 0 {
            e.failures = 0;
            e.blocked_until = None;
        }
        if let Some(until) = e.blocked_until.filter(|u| *u > now) {
            let ms = until.saturating_duration_since(now).as_millis() as u64;
            return Err(ms.div_ceil(1000).max(1));
        }
        // at the limit: one attempt at a time (after a window), none beyond it
        let over = if e.failures >= cfg.addr_free {
            e.in_flight >= 1
        } else {
            e.failures + e.in_flight >= cfg.addr_free || e.in_flight >= cfg.addr_concurrent
        };
        if over {
            return Err(1);
        }
        e.in_flight += 1;
        Ok(Attempt {
            th: self,
            key,
            done: false,
        })
    }

    /// End an attempt from `key`; `failed_user`: it failed for that user. The delay to apply.
    fn end(&self, key: IpAddr, failed_user: Option<&str>, now: Instant) -> Duration {
        let cfg = &self.cfg;
        let mut t = self.lock();
        let Some(e) = t.addrs.get_mut(&key) else {
            return Duration::ZERO;
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        let Some(user) = failed_user else {
            return Duration::ZERO;
        };
        e.failures += 1;
        e.last = now;
        if e.failures >= cfg.addr_free {
            let w = doubling(cfg.addr_base, cfg.addr_max, e.failures - cfg.addr_free);
            e.blocked_until = Some(now + w);
        }
        prune(&mut t.users, cfg, now, |u| u.last, |_| false);
        let u = t.users.entry(user.to_string()).or_insert(UserEntry {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(u.last) > cfg.forget {
            u.failures = 0;
        }
        u.failures += 1;
        u.last = now;
        if u.failures > cfg.user_free {
            doubling(cfg.user_base, cfg.user_max, u.failures - cfg.user_free - 1)
        } else {
            Duration::ZERO
        }
    }
}

/// Keep a table under `max_entries`: drop forgotten entries, then the oldest.
fn prune<K: Clone + Eq + std::hash::Hash, V>(
    m: &mut HashMap<K, V>,
    cfg: &ThrottleConfig,
    now: Instant,
    last: impl Fn(&V) -> Instant,
    busy: impl Fn(&V) -> bool,
) {
    if m.len() < cfg.max_entries {
        return;
    }
    m.retain(|_, v| busy(v) || now.saturating_duration_since(last(v)) <= cfg.forget);
    if m.len() >= cfg.max_entries {
        let mut ages: Vec<(K, Instant)> = m.iter().map(|(k, v)| (k.clone(), last(v))).collect();
        ages.sort_by_key(|(_, l)| *l);
        for (k, _) in ages.into_iter().take(m.len() - cfg.max_entries * 3 / 4) {
            m.remove(&k);
        }
    }
}

// ------------------------------------------------------------------ the guard of a node

/// What a node's login path needs: the hashing pool and the throttle.
pub struct Guard {
    pub pool: HashPool,
    pub throttle: Throttle,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            pool: HashPool::for_this_host(),
            throttle: Throttle::new(ThrottleConfig::default()),
        }
    }
}

/// A user name as it may appear in a log line: no spaces or control characters (a crafted
/// name cannot forge a line or a field), at most 64 characters.
pub fn log_safe(user: &str) -> String {
    let s: String = user
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '!') {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.is_empty() {
        "?".into()
    } else {
        s
    }
}

/// The line fail2ban matches: `authentication failure; rhost=ADDR user=USER msg=…`.
pub fn log_failure(ip: IpAddr, user: &str, msg: &str) {
    tracing::warn!(
        "authentication failure; rhost={ip} user={} msg={msg}",
        log_safe(user)
    );
}

async fn on_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("worker failed: {e}")))?
}

/// Check `user`'s password from `ip`, throttled: `Ok(true)` when right, `Ok(false)` when wrong
/// (after the user's delay), `Err` when refused (429 for the address, 503 when busy).
async fn check_password(
    node: &Arc<Node>,
    ip: IpAddr,
    user: &str,
    password: String,
) -> Result<bool> {
    let attempt = match node.guard.throttle.begin(ip) {
        Ok(a) => a,
        Err(secs) => {
            log_failure(
                ip,
                user,
                &format!("too many failures from this address; refused for {secs} s"),
            );
            return Err(Error::Throttled {
                message: format!("too many failed logins from this address: try again in {secs} s"),
                retry_after_s: secs,
            });
        }
    };
    let n = node.clone();
    let u = user.to_string();
    let hash = on_blocking(move || n.auth.password_hash(&u)).await?;
    let ok = node
        .guard
        .pool
        .run(move || crate::auth::verify_password(hash.as_deref(), &password))
        .await;
    let ok = match ok {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(
                "login not checked; rhost={ip} user={} msg={e}",
                log_safe(user)
            );
            return Err(e);
        }
    };
    if ok {
        attempt.succeeded();
        return Ok(true);
    }
    let delay = attempt.failed(user);
    log_failure(ip, user, "wrong user name or password");
    tokio::time::sleep(delay).await;
    Ok(false)
}

/// `POST /api/v1/access/ticket`, throttled (see the module documentation).
pub async fn login(node: &Arc<Node>, ip: IpAddr, req: LoginRequest) -> Result<LoginResponse> {
    let LoginRequest { username, password } = req;
    if !check_password(node, ip, &username, password).await? {
        return Err(Error::Unauthorized(
            "authentication failed: wrong user name or password".into(),
        ));
    }
    let n = node.clone();
    let s = on_blocking(move || n.auth.open_session(&username)).await?;
    tracing::info!("login; rhost={ip} user={}", log_safe(&s.username));
    Ok(s)
}

/// `PUT /api/v1/access/password`: `caller` changes their own password (giving the current one)
/// or, as root, another user's. The user's other sessions on this node end (`ticket`: the
/// caller's session, kept when it is their own password).
pub async fn change_password(
    node: &Arc<Node>,
    ip: IpAddr,
    caller: &Principal,
    ticket: Option<String>,
    req: PasswordChange,
) -> Result<()> {
    let target = req.userid.clone().unwrap_or_else(|| caller.user.clone());
    crate::auth::check_new_password(&target, &req.password).map_err(|e| match e {
        Error::Validation(f) if f.field == "username" => Error::validation("userid", f.message),
        e => e,
    })?;
    let own = target == caller.user;
    if own {
        let Some(old) = req.old_password.clone() else {
            return Err(Error::validation(
                "old_password",
                "give your current password to change it",
            ));
        };
        if !check_password(node, ip, &target, old).await? {
            return Err(Error::validation(
                "old_password",
                "the current password is wrong",
            ));
        }
    } else {
        if caller.user != "root" {
            return Err(Error::Forbidden(format!(
                "only root may set another user's password ({} is not yours)",
                log_safe(&target)
            )));
        }
        let (n, t) = (node.clone(), target.clone());
        if !on_blocking(move || n.auth.user_exists(&t)).await? {
            return Err(Error::NotFound(format!("user {target:?} does not exist")));
        }
    }
    let pw = req.password;
    let hash = node
        .guard
        .pool
        .run(move || crate::auth::hash_password(&pw))
        .await??;
    let (n, t) = (node.clone(), target.clone());
    let keep = if own { ticket } else { None };
    let ended = on_blocking(move || {
        n.auth.store_password_hash(&t, &hash)?;
        n.auth.end_sessions(&t, keep.as_deref())
    })
    .await?;
    tracing::info!(
        "password changed; rhost={ip} user={} by={} sessions_ended={ended}",
        log_safe(&target),
        log_safe(&caller.user)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            max_entries: 4,
            ..ThrottleConfig::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    /// An address gets `addr_free` failures, then waits a doubling window; attempts in flight
    /// count; another address is unaffected; a success resets nothing.
    #[test]
    fn address_windows_double_and_in_flight_counts() {
        let th = Throttle::new(cfg());
        let t0 = Instant::now();
        // a burst: 2 admitted at once, the 3rd refused before either has failed
        let burst: Vec<_> = (0..2).map(|_| th.begin_at(A, t0)).collect();
        assert!(burst.iter().all(|a| a.is_ok()));
        assert_eq!(th.begin_at(A, t0).err(), Some(1));
        let mut delays = vec![];
        for a in burst.into_iter().flatten() {
            delays.push(a.failed_at("root", t0));
        }
        let burst: Vec<_> = (0..2).map(|_| th.begin_at(A, t0)).collect();
        for a in burst.into_iter().flatten() {
            delays.push(a.failed_at("root", t0));
        }
        // 4 failures: one more may be in flight, not two
        let last = th.begin_at(A, t0);
        assert_eq!(th.begin_at(A, t0).err(), Some(1));
        if let Ok(a) = last {
            delays.push(a.failed_at("root", t0));
        }
        // user delays: none for the first 3, then 250 ms, 500 ms
        assert_eq!(
            delays,
            vec![
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                Duration::from_millis(250),
                Duration::from_millis(500)
            ]
        );
        // blocked for 1 s; B is not
        assert_eq!(th.begin_at(A, t0).err(), Some(1));
        assert!(th.begin_at(B, t0).is_ok());
        // after the window: one attempt at a time; its failure doubles the window
        let t1 = t0 + Duration::from_millis(1100);
        let a = th.begin_at(A, t1);
        assert!(a.is_ok());
        assert_eq!(th.begin_at(A, t1).err(), Some(1));
        if let Ok(a) = a {
            a.failed_at("root", t1);
        }
        let t2 = t1 + Duration::from_millis(1500);
        assert_eq!(th.begin_at(A, t2).err(), Some(1), "2 s window");
        let t3 = t1 + Duration::from_millis(2100);
        let a = th.begin_at(A, t3);
        assert!(a.is_ok());
        // a success does not reset the address
        if let Ok(a) = a {
            a.succeeded();
        }
        assert!(th.begin_at(A, t3).is_ok());
        // forgotten after 15 min
        let later = t3 + Duration::from_secs(16 * 60);
        let a: Vec<_> = (0..2).map(|_| th.begin_at(A, later)).collect();
        assert!(a.iter().all(|x| x.is_ok()));
    }

    #[test]
    fn windows_are_capped_and_tables_bounded() {
        let c = cfg();
        assert_eq!(doubling(c.addr_base, c.addr_max, 40), c.addr_max);
        assert_eq!(doubling(c.user_base, c.user_max, 3), Duration::from_secs(2));
        let th = Throttle::new(c);
        let t0 = Instant::now();
        for i in 0..50u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            if let Ok(a) = th.begin_at(ip, t0) {
                a.failed_at(&format!("user{i}"), t0);
            }
        }
        let t = th.lock();
        assert!(
            t.addrs.len() <= 4 && t.users.len() <= 4,
            "{}",
            t.addrs.len()
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(A);
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap_or(B);
        assert_eq!(addr_key(a), addr_key(b));
        let m: IpAddr = "::ffff:192.0.2.1".parse().unwrap_or(B);
        assert_eq!(addr_key(m), A);
    }

    #[test]
    fn log_lines_cannot_be_forged() {
        assert_eq!(log_safe("root"), "root");
        assert_eq!(
            log_safe("x msg=ok\nrhost=1.2.3.4"),
            "x?msg?ok?rhost?1.2.3.4"
        );
        assert_eq!(log_safe(""), "?");
        assert_eq!(log_safe(&"a".repeat(100)).len(), 64);
    }

    /// The pool runs jobs on its threads; with its workers busy and its queue full it refuses
    /// at once (503) instead of queueing without bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_is_bounded() {
        let pool = Arc::new(HashPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let r1 = rx.clone();
        let p1 = pool.clone();
        // occupies the worker until released
        let busy = tokio::spawn(async move {
            p1.run(move || {
                let _ = r1.lock().map(|r| r.recv());
                std::thread::current().name().map(str::to_string)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p2 = pool.clone();
        let queued = tokio::spawn(async move { p2.run(|| 2).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = pool.run(|| 3).await;
        assert!(
            matches!(refused, Err(Error::Busy { .. })),
            "{:?}",
            refused.err()
        );
        let _ = tx.send(());
        let _ = tx.send(());
        let name = busy.await.ok().and_then(|r| r.ok()).flatten();
        assert_eq!(name.as_deref(), Some("keel-pwhash-0"));
        assert_eq!(queued.await.ok().and_then(|r| r.ok()), Some(2));
        assert_eq!(pool.run(|| 4).await.ok(), Some(4));
    }
}
