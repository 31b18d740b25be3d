//! Per-source admission: allow/deny lists of CIDR ranges for syslog
//! senders, and a per-source rate limit, so that no single sender, noisy or
//! hostile, can starve the others.
//!
//! Each core keeps its own token buckets (shared-nothing), so the limit is
//! per source per core; a sender's TCP connection lives on one core, and
//! UDP from one address hashes to one core, so in practice this is per
//! source. The bucket map is bounded: when full, the bucket idle longest is
//! evicted (counted), so a sender spraying random source addresses cannot
//! grow memory.
//!
//! Open stream connections (TCP, RELP, TLS) are held to a bound for the
//! node and one per source address ([`ConnectionSlots`], shared by the
//! cores: a source's connections may land on any core), so that many
//! connections cannot take unbounded memory and no one source can take
//! every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use anyhow::{bail, Context};

/// One CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address.
    pub fn parse(text: &str) -> anyhow::Result<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .with_context(|| format!("{text:?} has a bad prefix length"))?,
            None => max,
        };
        if prefix > max {
            bail!("{text:?}: prefix length {prefix} is longer than {max}");
        }
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

/// Why a source was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Denied,
    RateLimited,
}

impl Refusal {
    /// The drop-reason label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Denied => "source_denied",
            Refusal::RateLimited => "source_rate_limited",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ns: i64,
}

/// One core's admission state.
pub struct Admission {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    rate_eps: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    buckets_max: usize,
    pub evicted_total: u64,
}

impl Admission {
    /// `rate_eps` 0 turns rate limiting off; an empty `allow` allows all.
    pub fn new(
        allow: &[String],
        deny: &[String],
        rate_eps: u64,
        burst: u64,
        buckets_max: usize,
    ) -> anyhow::Result<Admission> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|c| Cidr::parse(c))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        Ok(Admission {
            allow: parse(allow).context("limits.allow")?,
            deny: parse(deny).context("limits.deny")?,
            rate_eps: rate_eps as f64,
            burst: burst.max(1) as f64,
            buckets: HashMap::new(),
            buckets_max: buckets_max.max(1),
            evicted_total: 0,
        })
    }

    /// Whether the lists let `ip` in (checked once per TCP connection).
    pub fn permitted(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }

    /// Whether the rate limiter is on.
    pub fn limits_rate(&self) -> bool {
        self.rate_eps > 0.0
    }

    /// Takes `n` events' worth of tokens for `ip` at `now_ns`; returns how
    /// many of them may pass.
    pub fn take(&mut self, ip: IpAddr, n: u64, now_ns: i64) -> u64 {
        if !self.limits_rate() {
            return n;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.buckets_max {
            self.make_room(now_ns);
        }
        let (rate, burst) = (self.rate_eps, self.burst);
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last_ns: now_ns,
        });
        let elapsed_s = (now_ns - bucket.last_ns).max(0) as f64 / 1e9;
        bucket.tokens = (bucket.tokens + elapsed_s * rate).min(burst);
        bucket.last_ns = now_ns;
        let granted = (bucket.tokens.floor() as u64).min(n);
        bucket.tokens -= granted as f64;
        granted
    }

    /// Charges `n` events to `ip` even beyond its tokens (they were already
    /// read); a TCP connection then waits [`Admission::wait_ns`] before its
    /// next read, which holds its average to the rate.
    pub fn debit(&mut self, ip: IpAddr, n: u64, now_ns: i64) {
        if !self.limits_rate() {
            return;
        }
        let granted = self.take(ip, n, now_ns);
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            bucket.tokens -= (n - granted) as f64;
        }
    }

    /// How long until `n` tokens are available for `ip` (TCP waits this
    /// long instead of dropping).
    pub fn wait_ns(&self, ip: IpAddr, n: u64) -> i64 {
        let Some(bucket) = self.buckets.get(&ip) else {
            return 0;
        };
        let missing = (n as f64).min(self.burst) - bucket.tokens;
        if missing <= 0.0 || self.rate_eps <= 0.0 {
            0
        } else {
            (missing / self.rate_eps * 1e9) as i64
        }
    }

    /// Frees bucket slots in bulk, so that a flood of new addresses costs
    /// amortised O(1) per event: first every bucket that has refilled to
    /// its burst (it holds no state a fresh bucket would not), then, if
    /// still full, half of the rest. Evictions are counted.
    fn make_room(&mut self, now_ns: i64) {
        let before = self.buckets.len();
        let (rate, burst) = (self.rate_eps, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + (now_ns - b.last_ns).max(0) as f64 / 1e9 * rate < burst);
        if self.buckets.len() >= self.buckets_max {
            let mut keep = self.buckets_max / 2;
            self.buckets.retain(|_, _| {
                let kept = keep > 0;
                keep = keep.saturating_sub(1);
                kept
            });
        }
        self.evicted_total += (before - self.buckets.len()) as u64;
        debug_assert!(self.buckets.len() < self.buckets_max);
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Which bound refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefusal {
    /// `limits.connections_max`: the node's open connections.
    Node,
    /// `limits.connections_per_source_max`: this source's.
    Source,
}

impl SlotRefusal {
    /// The drop-reason label.
    pub fn reason(self) -> &'static str {
        match self {
            SlotRefusal::Node => "connections_max",
            SlotRefusal::Source => "connections_per_source_max",
        }
    }
}

/// The node's open stream connections, in all and per source address,
/// held to their bounds (0: no bound). A connection takes a slot when
/// accepted ([`ConnectionSlots::take`]) and gives it back when it ends
/// ([`ConnectionSlots::give_back`]). Taken once per connection, so a
/// lock is cheap enough; the map holds only sources with a connection open.
pub struct ConnectionSlots {
    max: u64,
    per_source_max: u32,
    open: Mutex<(u64, HashMap<IpAddr, u32>)>,
}

impl ConnectionSlots {
    pub fn new(max: usize, per_source_max: usize) -> ConnectionSlots {
        ConnectionSlots {
            max: max as u64,
            per_source_max: u32::try_from(per_source_max).unwrap_or(u32::MAX),
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// A slot for a new connection from `source`, or the bound that
    /// refuses it.
    pub fn take(&self, source: IpAddr) -> Result<(), SlotRefusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_source) = &mut *open;
        if self.max > 0 && *total >= self.max {
            return Err(SlotRefusal::Node);
        }
        let count = by_source.entry(source).or_insert(0);
        if self.per_source_max > 0 && *count >= self.per_source_max {
            return Err(SlotRefusal::Source);
        }
        *count += 1;
        *total += 1;
        Ok(())
    }

    /// The connection from `source` that took a slot ended.
    pub fn give_back(&self, source: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_source) = &mut *open;
        debug_assert!(*total > 0, "a slot given back that was not taken");
        *total = total.saturating_sub(1);
        if let Some(count) = by_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                by_source.remove(&source);
            }
        }
    }

    /// Connections open now: (all, sources with one open). The node
    /// reports open connections per core (`tcp_connections_open`); this
    /// is for the bounds' tests.
    #[cfg(test)]
    fn open(&self) -> (u64, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.0, open.1.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
    }

    #[test]
    fn deny_wins_over_allow() {
        let a = Admission::new(&["10.0.0.0/8".into()], &["10.0.0.5".into()], 0, 0, 10).unwrap();
        assert!(a.permitted("10.9.9.9".parse().unwrap()));
        assert!(!a.permitted("10.0.0.5".parse().unwrap()));
        assert!(!a.permitted("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let mut a = Admission::new(&[], &[], 100, 10, 10).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(a.take(ip, 25, 0), 10, "the burst passes at once");
        assert_eq!(a.take(ip, 5, 0), 0);
        assert_eq!(a.take(ip, 5, 50_000_000), 5, "50 ms at 100/s is 5 tokens");
        assert!(a.wait_ns(ip, 10) > 0);
        a.debit(ip, 20, 50_000_000);
        assert_eq!(a.wait_ns(ip, 1), 210_000_000, "20 owed plus 1 at 100/s");
    }

    #[test]
    fn bucket_map_is_bounded() {
        let mut a = Admission::new(&[], &[], 10, 10, 100).unwrap();
        for i in 0..10_000u32 {
            a.take(IpAddr::from(i.to_be_bytes()), 1, i64::from(i));
        }
        assert!(a.tracked() <= 100);
        assert_eq!(a.evicted_total + a.tracked() as u64, 10_000);
    }

    #[test]
    fn connection_slots_hold_the_node_and_each_source_to_their_bounds() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let slots = ConnectionSlots::new(3, 2);
        assert_eq!(slots.take(a), Ok(()));
        assert_eq!(slots.take(a), Ok(()));
        assert_eq!(slots.take(a), Err(SlotRefusal::Source), "a's own bound");
        assert_eq!(slots.take(b), Ok(()));
        assert_eq!(slots.take(c), Err(SlotRefusal::Node), "the node's bound");
        assert_eq!(slots.open(), (3, 2));
        slots.give_back(a);
        assert_eq!(slots.take(c), Ok(()), "a slot came back");
        assert_eq!(slots.take(a), Err(SlotRefusal::Node));
        for source in [a, b, c] {
            slots.give_back(source);
        }
        assert_eq!(
            slots.open(),
            (0, 0),
            "no source is kept once it has none open"
        );
        // 0: no bound.
        let open = ConnectionSlots::new(0, 0);
        for _ in 0..10_000 {
            assert_eq!(open.take(a), Ok(()));
        }
        assert_eq!(open.open(), (10_000, 1));
    }
}
