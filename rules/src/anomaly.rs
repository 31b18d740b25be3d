//! Anomaly detector state: baselines, first-seen sets and outlier models.
//!
//! This module owns the per-entity state machines of anomaly rules (see
//! `crate::anomaly_rule` and `rules/ANOMALY.md`): what one entity (one
//! rule and one group key) remembers, how an observation or a watermark
//! changes it, and what it finds. It must not own the group table, the
//! caps, the indices or the alerts: an [`AnomalyBody`] lives inside a
//! group of [`crate::CorrelationState`], which creates, evicts, reindexes
//! and drops it like any correlation group, and turns each [`Finding`]
//! into a [`crate::CorrelationAlert`]. Like the rest of the crate it reads
//! no clock: buckets close on event time and watermarks passed in.
//!
//! ## Buckets (`baseline`, `outlier`)
//!
//! Buckets are aligned to the epoch (`[k * bucket, (k + 1) * bucket)`), so
//! two nodes cut the same buckets. The open bucket closes when an
//! observation arrives in a later bucket or when `advance(now)` passes its
//! end; buckets in between close empty, which is what makes a silent
//! entity's drop visible. At most [`CATCH_UP_BUCKETS_MAX`] buckets are
//! closed one by one per gap; the rest of a longer gap is skipped as empty
//! without scoring (counted). An observation older than the open bucket
//! is late and only counted. Each closed bucket is scored against the
//! model *before* the model learns it.
//!
//! ## Baseline model
//!
//! Per entity (per hour-of-week slot with seasonality), an EWMA mean and
//! variance whose weight is `max(alpha, 1 / n)`, so the first buckets are
//! an exact running mean, and a ring of the most recent bucket values for
//! the median and MAD. The z-score divides by `max(sd, min_deviation)`,
//! the MAD score by `max(1.4826 * MAD, min_deviation)`. A bucket is
//! anomalous when every configured threshold is reached in an allowed
//! direction. Alerts fire once per episode: not again while consecutive
//! buckets stay anomalous the same way. Spikes of `count` and `distinct`
//! fire eagerly, on the event that reaches the threshold, since those
//! metrics only grow within a bucket; everything else fires when the
//! bucket closes.
//!
//! ## Outlier model
//!
//! A bucket's feature vector (`count`, `sum`, `max`, `mean`, `distinct`,
//! each as `sign(x) * ln(1 + |x|)`) is scored by its distance to the
//! nearest of at most `centres` streaming k-means centres, in units of
//! that centre's EWMA radius (at least `min_deviation`). Centres are
//! seeded by distinct points during warm-up, then move towards the points
//! they win with weight `max(alpha, 1 / n)`.
//!
//! ## First seen (`first_seen`, `rare_template`)
//!
//! A set of xxh3-64 hashes of the entity's values (reduced to a network
//! prefix where configured) with their last-seen time, at most
//! `values_max` (the least recently seen is evicted and counted), and
//! values not seen for `forget_ns` aged out. New values during the
//! entity's learning period are learned silently.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use crate::anomaly_rule::{AnomalyMetric, AnomalySpec, Feature, Seasonality};
use crate::correlation::{btree_bytes, heap_block};
use crate::correlation_rule::{CorrelationKind, CorrelationMeta};

/// The most distinct values one bucket tracks for `distinct` metrics and
/// features; more are counted in `distinct_capped_total` and not added.
pub const DISTINCT_PER_BUCKET_MAX: usize = 4096;

/// The most buckets closed one by one for a single gap (see module docs).
pub const CATCH_UP_BUCKETS_MAX: u64 = 1024;

const HOUR_NS: i64 = 3_600_000_000_000;
/// Hours from the epoch (a Thursday) back to the Monday that starts its
/// week, so that slot 0 is Monday 00:00 UTC.
const EPOCH_WEEK_OFFSET_HOURS: i64 = 72;
const WEEK_HOURS: i64 = 168;
/// MAD of a normal distribution to its standard deviation.
const MAD_TO_SD: f64 = 1.4826;

/// Counters of refusals, kept by the owning state.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub(crate) struct Counters {
    /// Observations older than the open bucket.
    pub(crate) late: u64,
    /// Empty buckets skipped without scoring after a long gap.
    pub(crate) skipped: u64,
    /// First-seen values evicted at `values_max`.
    pub(crate) values_evicted: u64,
    /// Distinct values not tracked at [`DISTINCT_PER_BUCKET_MAX`].
    pub(crate) distinct_capped: u64,
    /// Observations whose value could not be used (not a number for
    /// `sum`, absent where needed).
    pub(crate) unusable: u64,
}

/// Something an entity found: the caller makes it an alert.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    /// The alert id's window: bucket start, or the event time.
    pub(crate) window_start_ns: i64,
    /// Extra bytes for the alert id (a first-seen value), so two new
    /// values at the same instant get different ids.
    pub(crate) id_extra: Vec<u8>,
    pub(crate) first_seen_ns: i64,
    pub(crate) last_seen_ns: i64,
    pub(crate) count: u64,
    pub(crate) score: Option<f64>,
    pub(crate) reason: String,
}

/// Sums, maxima and distinct values of the open bucket.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Accum {
    count: u64,
    /// Events that carried a usable value.
    valued: u64,
    sum: f64,
    max: f64,
    /// Sorted hashes of distinct values, at most [`DISTINCT_PER_BUCKET_MAX`].
    distinct: Vec<u64>,
}

impl Accum {
    fn new() -> Self {
        Accum {
            count: 0,
            valued: 0,
            sum: 0.0,
            max: 0.0,
            distinct: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.count = 0;
        self.valued = 0;
        self.sum = 0.0;
        self.max = 0.0;
        self.distinct.clear();
    }

    fn metric(&self, metric: AnomalyMetric) -> f64 {
        match metric {
            AnomalyMetric::Count => self.count as f64,
            AnomalyMetric::Distinct => self.distinct.len() as f64,
            AnomalyMetric::Sum => self.sum,
        }
    }

    fn feature(&self, feature: Feature) -> f64 {
        match feature {
            Feature::Count => self.count as f64,
            Feature::Sum => self.sum,
            Feature::Max => self.max,
            Feature::Mean if self.valued > 0 => self.sum / self.valued as f64,
            Feature::Mean => 0.0,
            Feature::Distinct => self.distinct.len() as f64,
        }
    }
}

/// One EWMA model and its ring of recent values.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Slot {
    n: u64,
    mean: f64,
    var: f64,
    ring: VecDeque<f64>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            n: 0,
            mean: 0.0,
            var: 0.0,
            ring: VecDeque::new(),
        }
    }

    fn learn(&mut self, x: f64, alpha: f64, ring_max: usize) {
        self.n += 1;
        let weight = alpha.max(1.0 / self.n as f64);
        let delta = x - self.mean;
        self.mean += weight * delta;
        self.var = (1.0 - weight) * (self.var + weight * delta * delta);
        if self.ring.len() >= ring_max {
            self.ring.pop_front();
        }
        self.ring.push_back(x);
        debug_assert!(self.ring.len() <= ring_max);
        debug_assert!(self.var >= 0.0 || !self.var.is_finite());
    }
}

/// The model a bucket is scored against, fixed while the bucket is open.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Snapshot {
    warm: bool,
    mean: f64,
    sd: f64,
    median: f64,
    mad_sd: f64,
}

/// One streaming k-means centre.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Centre {
    point: Vec<f64>,
    weight: f64,
    radius2: f64,
}

/// The model of a bucketed detector.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum Model {
    /// `baseline`: one slot, or 168 with hour-of-week seasonality.
    Baseline {
        slots: Vec<Slot>,
        snapshot: Snapshot,
    },
    /// `outlier`: the centres.
    Outlier { centres: Vec<Centre> },
}

/// A bucketed entity (`baseline`, `outlier`).
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Bucketed {
    bucket_start_ns: i64,
    /// The newest event time in the open bucket.
    bucket_last_ns: i64,
    acc: Accum,
    closed: u64,
    idle: u32,
    /// The direction of the last closed bucket's anomaly: 1 up, -1 down,
    /// 0 none.
    episode: i8,
    /// Whether the open bucket already alerted (eagerly).
    fired: bool,
    model: Model,
}

/// A first-seen entity.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct FirstSeenBody {
    learn_until_ns: i64,
    values: BTreeMap<u64, i64>,
    by_time: BTreeSet<(i64, u64)>,
}

/// The anomaly state of one entity.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum AnomalyBody {
    /// `baseline` and `outlier`.
    Bucketed(Bucketed),
    /// `first_seen` and `rare_template`.
    FirstSeen(FirstSeenBody),
}

/// Every float the state holds is kept finite (non-finite inputs are
/// refused), so equality is reflexive.
impl Eq for AnomalyBody {}

/// The start of the bucket holding `time_ns`, saturating at the bottom.
fn align(time_ns: i64, bucket_ns: i64) -> i64 {
    time_ns.saturating_sub(time_ns.rem_euclid(bucket_ns.max(1)))
}

fn season_slot(time_ns: i64) -> usize {
    let hours = time_ns.div_euclid(HOUR_NS) + EPOCH_WEEK_OFFSET_HOURS;
    // Lossless: rem_euclid(168) is in 0..168.
    hours.rem_euclid(WEEK_HOURS) as usize
}

fn log_scale(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

fn finite_or_none(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Median of a small list (a copy is sorted; allocates per bucket close).
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

fn parse_number(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let value: f64 = text.trim().parse().ok()?;
    value.is_finite().then_some(value)
}

/// A value reduced to its network when it is an IP address and a prefix
/// is configured; otherwise the value itself.
fn network_of(value: &[u8], spec: &AnomalySpec) -> Option<String> {
    if spec.prefix_v4.is_none() && spec.prefix_v6.is_none() {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let address: IpAddr = text.trim().parse().ok()?;
    match address {
        IpAddr::V4(v4) => {
            let prefix = spec.prefix_v4?;
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let network = std::net::Ipv4Addr::from(bits & mask);
            Some(format!("{network}/{prefix}"))
        }
        IpAddr::V6(v6) => {
            let prefix = spec.prefix_v6?;
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let network = std::net::Ipv6Addr::from(bits & mask);
            Some(format!("{network}/{prefix}"))
        }
    }
}

impl AnomalyBody {
    /// A fresh entity whose first event is at `time_ns`.
    pub(crate) fn new(kind: CorrelationKind, spec: &AnomalySpec, time_ns: i64) -> Self {
        match kind {
            CorrelationKind::FirstSeen | CorrelationKind::RareTemplate => {
                AnomalyBody::FirstSeen(FirstSeenBody {
                    learn_until_ns: time_ns.saturating_add(spec.learn_ns),
                    values: BTreeMap::new(),
                    by_time: BTreeSet::new(),
                })
            }
            _ => {
                let model = if kind == CorrelationKind::Outlier {
                    Model::Outlier {
                        centres: Vec::new(),
                    }
                } else {
                    let slots = match spec.seasonality {
                        Seasonality::None => 1,
                        // Lossless: WEEK_HOURS is 168.
                        Seasonality::HourOfWeek => WEEK_HOURS as usize,
                    };
                    Model::Baseline {
                        slots: vec![Slot::new(); slots],
                        snapshot: Snapshot {
                            warm: false,
                            mean: 0.0,
                            sd: spec.min_deviation,
                            median: 0.0,
                            mad_sd: spec.min_deviation,
                        },
                    }
                };
                AnomalyBody::Bucketed(Bucketed {
                    bucket_start_ns: align(time_ns, spec.bucket_ns),
                    bucket_last_ns: time_ns,
                    acc: Accum::new(),
                    closed: 0,
                    idle: 0,
                    episode: 0,
                    fired: false,
                    model,
                })
            }
        }
    }

    /// When `advance` must next look at this entity, given its newest
    /// event time: the end of the open bucket (minus one, since `advance`
    /// takes deadlines strictly before the watermark), or when every
    /// first-seen value would have aged out.
    pub(crate) fn deadline_ns(&self, spec: &AnomalySpec, newest_ns: i64) -> i64 {
        match self {
            AnomalyBody::Bucketed(b) => b
                .bucket_start_ns
                .saturating_add(spec.bucket_ns)
                .saturating_sub(1),
            AnomalyBody::FirstSeen(_) => newest_ns.saturating_add(spec.forget_ns),
        }
    }

    /// Feeds one observation; findings are appended to `findings`.
    pub(crate) fn observe(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        value: Option<&[u8]>,
        time_ns: i64,
        counters: &mut Counters,
        findings: &mut Vec<Finding>,
    ) {
        match self {
            AnomalyBody::FirstSeen(body) => {
                body.observe(meta, spec, value, time_ns, counters, findings)
            }
            AnomalyBody::Bucketed(body) => {
                body.observe(meta, spec, value, time_ns, counters, findings)
            }
        }
    }

    /// Closes the buckets that end before `now_ns`. Returns whether the
    /// entity stays (false: it expired after `expire_buckets` empty
    /// buckets, or is a first-seen entity whose values all aged out).
    pub(crate) fn advance(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        now_ns: i64,
        counters: &mut Counters,
        findings: &mut Vec<Finding>,
    ) -> bool {
        match self {
            AnomalyBody::FirstSeen(_) => false,
            AnomalyBody::Bucketed(body) => {
                body.close_until(
                    meta,
                    spec,
                    align(now_ns, spec.bucket_ns),
                    counters,
                    findings,
                );
                body.idle < spec.expire_buckets
            }
        }
    }
}

impl AnomalyBody {
    /// The estimated heap bytes this body owns (not its own struct, which
    /// the group boxes and counts), in the terms of
    /// [`crate::CorrelationState::memory_by_correlation`]: the open
    /// bucket's distinct-value hashes, the baseline slots and their rings
    /// or the outlier centres and their points, or the first-seen value
    /// set and its time index. O(slots + centres), no allocation.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            AnomalyBody::Bucketed(body) => body.heap_bytes(),
            AnomalyBody::FirstSeen(body) => body.heap_bytes(),
        }
    }
}

impl Bucketed {
    fn heap_bytes(&self) -> usize {
        let model = match &self.model {
            Model::Baseline { slots, .. } => {
                let rings: usize = slots
                    .iter()
                    .map(|slot| heap_block(slot.ring.capacity() * size_of::<f64>()))
                    .sum();
                heap_block(slots.capacity() * size_of::<Slot>()) + rings
            }
            Model::Outlier { centres } => {
                let points: usize = centres
                    .iter()
                    .map(|centre| heap_block(centre.point.capacity() * size_of::<f64>()))
                    .sum();
                heap_block(centres.capacity() * size_of::<Centre>()) + points
            }
        };
        heap_block(self.acc.distinct.capacity() * size_of::<u64>()) + model
    }
}

impl FirstSeenBody {
    fn heap_bytes(&self) -> usize {
        btree_bytes::<u64, i64>(self.values.len())
            + btree_bytes::<(i64, u64), ()>(self.by_time.len())
    }

    fn observe(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        value: Option<&[u8]>,
        time_ns: i64,
        counters: &mut Counters,
        findings: &mut Vec<Finding>,
    ) {
        let Some(value) = value else {
            counters.unusable += 1;
            return;
        };
        let network = network_of(value, spec);
        let normalized: &[u8] = network.as_ref().map_or(value, |n| n.as_bytes());
        let hash = xxhash_rust::xxh3::xxh3_64(normalized);
        // Age out what has not been seen for forget_ns.
        let oldest_kept_ns = time_ns.saturating_sub(spec.forget_ns);
        while let Some(&(seen_ns, old)) = self.by_time.first() {
            if seen_ns >= oldest_kept_ns {
                break;
            }
            self.by_time.pop_first();
            self.values.remove(&old);
        }
        match self.values.get_mut(&hash) {
            Some(seen_ns) => {
                if *seen_ns < time_ns {
                    self.by_time.remove(&(*seen_ns, hash));
                    *seen_ns = time_ns;
                    self.by_time.insert((time_ns, hash));
                }
            }
            None => {
                if time_ns < oldest_kept_ns {
                    // Unreachable: oldest_kept_ns <= time_ns.
                    return;
                }
                self.values.insert(hash, time_ns);
                self.by_time.insert((time_ns, hash));
                while self.values.len() > spec.values_max as usize {
                    if let Some((_, old)) = self.by_time.pop_first() {
                        self.values.remove(&old);
                        counters.values_evicted += 1;
                    }
                }
                if time_ns >= self.learn_until_ns {
                    let field = meta.value_fields.first().map_or("value", String::as_str);
                    let shown = String::from_utf8_lossy(normalized);
                    let what = if meta.kind == CorrelationKind::RareTemplate {
                        "new"
                    } else {
                        "first"
                    };
                    findings.push(Finding {
                        window_start_ns: time_ns,
                        id_extra: normalized.to_vec(),
                        first_seen_ns: time_ns,
                        last_seen_ns: time_ns,
                        count: self.values.len() as u64,
                        score: None,
                        reason: format!(
                            "{what} {field} '{shown}' for this group ({} values known)",
                            self.values.len()
                        ),
                    });
                }
            }
        }
        debug_assert_eq!(self.values.len(), self.by_time.len());
        debug_assert!(self.values.len() <= spec.values_max as usize);
    }
}

impl Bucketed {
    fn observe(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        value: Option<&[u8]>,
        time_ns: i64,
        counters: &mut Counters,
        findings: &mut Vec<Finding>,
    ) {
        let bucket_ns = align(time_ns, spec.bucket_ns);
        if bucket_ns < self.bucket_start_ns {
            counters.late += 1;
            return;
        }
        self.close_until(meta, spec, bucket_ns, counters, findings);
        debug_assert_eq!(self.bucket_start_ns, bucket_ns);
        self.bucket_last_ns = if self.acc.count == 0 {
            time_ns
        } else {
            self.bucket_last_ns.max(time_ns)
        };
        self.acc.count += 1;
        if let Some(value) = value {
            if let Some(number) = parse_number(value) {
                self.acc.valued += 1;
                self.acc.sum += number;
                if !self.acc.sum.is_finite() {
                    // Keep the state finite; a sum this large is already
                    // far outside any baseline.
                    self.acc.sum = f64::MAX.copysign(self.acc.sum);
                }
                self.acc.max = if self.acc.valued == 1 {
                    number
                } else {
                    self.acc.max.max(number)
                };
            } else if spec.metric == AnomalyMetric::Sum && meta.kind == CorrelationKind::Baseline {
                counters.unusable += 1;
            }
            let hash = xxhash_rust::xxh3::xxh3_64(value);
            if let Err(at) = self.acc.distinct.binary_search(&hash) {
                if self.acc.distinct.len() < DISTINCT_PER_BUCKET_MAX {
                    self.acc.distinct.insert(at, hash);
                } else {
                    counters.distinct_capped += 1;
                }
            }
        }
        // Eager spikes: count and distinct only grow within a bucket.
        if let Model::Baseline { snapshot, .. } = &self.model {
            let eager = matches!(spec.metric, AnomalyMetric::Count | AnomalyMetric::Distinct)
                && spec.direction.up()
                && snapshot.warm
                && !self.fired
                && self.episode != 1;
            if eager {
                let x = self.acc.metric(spec.metric);
                let (z, m) = scores(snapshot, x);
                if direction_of(spec, z, m) == 1 {
                    self.fired = true;
                    findings.push(self.baseline_finding(meta, spec, x, z, m, time_ns));
                }
            }
        }
    }

    /// Closes buckets until the open one starts at `target_ns` (an aligned
    /// bucket start); see the module docs for the catch-up bound.
    fn close_until(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        target_ns: i64,
        counters: &mut Counters,
        findings: &mut Vec<Finding>,
    ) {
        let mut closed = 0u64;
        while self.bucket_start_ns < target_ns {
            if closed >= CATCH_UP_BUCKETS_MAX {
                let gap = target_ns.saturating_sub(self.bucket_start_ns) / spec.bucket_ns;
                // Lossless enough: a gap is counted, saturating.
                counters.skipped = counters.skipped.saturating_add(gap.max(0) as u64);
                self.idle = self
                    .idle
                    .saturating_add(u32::try_from(gap).unwrap_or(u32::MAX));
                self.bucket_start_ns = target_ns;
                self.acc.clear();
                self.fired = false;
                self.episode = 0;
                self.refresh_snapshot(spec);
                break;
            }
            self.close_one(meta, spec, findings);
            closed += 1;
        }
    }

    /// Scores and learns the open bucket, then opens the next one.
    fn close_one(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        findings: &mut Vec<Finding>,
    ) {
        let bucket_end_ns = self
            .bucket_start_ns
            .saturating_add(spec.bucket_ns)
            .saturating_sub(1);
        let mut direction = 0i8;
        match &mut self.model {
            Model::Baseline { slots, snapshot } => {
                let x = self.acc.metric(spec.metric);
                let (z, m) = scores(snapshot, x);
                direction = if snapshot.warm {
                    direction_of(spec, z, m)
                } else {
                    0
                };
                if self.fired {
                    direction = 1;
                }
                if direction != 0 && direction != self.episode && !self.fired {
                    let finding = baseline_finding_parts(
                        meta,
                        spec,
                        snapshot,
                        self.bucket_start_ns,
                        bucket_end_ns,
                        x,
                        z,
                        m,
                    );
                    findings.push(finding);
                }
                let slot = match spec.seasonality {
                    Seasonality::None => 0,
                    Seasonality::HourOfWeek => season_slot(self.bucket_start_ns),
                };
                let ring_max = match spec.seasonality {
                    Seasonality::None => spec.history_buckets,
                    Seasonality::HourOfWeek => spec
                        .history_buckets
                        .min(crate::anomaly_rule::SEASON_HISTORY_MAX),
                } as usize;
                if let Some(slot) = slots.get_mut(slot) {
                    slot.learn(x, spec.alpha, ring_max.max(1));
                }
            }
            Model::Outlier { centres } => {
                let point: Vec<f64> = spec
                    .features
                    .iter()
                    .map(|f| log_scale(self.acc.feature(*f)))
                    .collect();
                let nearest = nearest_centre(centres, &point);
                let warm = self.closed >= u64::from(spec.warmup_buckets);
                if let Some((index, distance)) = nearest {
                    let radius = centres
                        .get(index)
                        .map_or(0.0, |c| c.radius2.sqrt())
                        .max(spec.min_deviation);
                    let score = distance / radius;
                    if warm && score >= spec.distance {
                        direction = 1;
                        if self.episode != 1 {
                            let shown: Vec<String> = spec
                                .features
                                .iter()
                                .map(|f| format!("{}={}", f.name(), self.acc.feature(*f)))
                                .collect();
                            findings.push(Finding {
                                window_start_ns: self.bucket_start_ns,
                                id_extra: Vec::new(),
                                first_seen_ns: self.bucket_start_ns,
                                last_seen_ns: bucket_end_ns,
                                count: self.acc.count,
                                score: finite_or_none(score),
                                reason: format!(
                                    "bucket features [{}] are {score:.2} cluster radii from the nearest centre of {} (threshold {})",
                                    shown.join(", "),
                                    centres.len(),
                                    spec.distance
                                ),
                            });
                        }
                    }
                }
                learn_centres(centres, &point, nearest, spec, warm);
            }
        }
        self.episode = direction;
        self.idle = if self.acc.count == 0 {
            self.idle.saturating_add(1)
        } else {
            0
        };
        self.closed += 1;
        self.bucket_start_ns = self.bucket_start_ns.saturating_add(spec.bucket_ns);
        self.acc.clear();
        self.fired = false;
        self.refresh_snapshot(spec);
    }

    /// Recomputes the baseline snapshot for the open bucket's slot.
    fn refresh_snapshot(&mut self, spec: &AnomalySpec) {
        let Model::Baseline { slots, snapshot } = &mut self.model else {
            return;
        };
        let slot = match spec.seasonality {
            Seasonality::None => 0,
            Seasonality::HourOfWeek => season_slot(self.bucket_start_ns),
        };
        let Some(slot) = slots.get(slot) else {
            return;
        };
        let median_value = median(slot.ring.iter().copied()).unwrap_or(slot.mean);
        let mad = median(slot.ring.iter().map(|x| (x - median_value).abs())).unwrap_or(0.0);
        *snapshot = Snapshot {
            warm: slot.n >= u64::from(spec.warmup_buckets),
            mean: slot.mean,
            sd: slot.var.max(0.0).sqrt().max(spec.min_deviation),
            median: median_value,
            mad_sd: (MAD_TO_SD * mad).max(spec.min_deviation),
        };
    }

    fn baseline_finding(
        &self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        x: f64,
        z: f64,
        m: f64,
        time_ns: i64,
    ) -> Finding {
        let Model::Baseline { snapshot, .. } = &self.model else {
            // Unreachable: only baselines score this way.
            return baseline_finding_parts(
                meta,
                spec,
                &Snapshot {
                    warm: false,
                    mean: 0.0,
                    sd: 1.0,
                    median: 0.0,
                    mad_sd: 1.0,
                },
                self.bucket_start_ns,
                time_ns,
                x,
                z,
                m,
            );
        };
        baseline_finding_parts(meta, spec, snapshot, self.bucket_start_ns, time_ns, x, z, m)
    }
}

/// `(z-score, MAD score)` of `x` against a snapshot.
fn scores(snapshot: &Snapshot, x: f64) -> (f64, f64) {
    (
        (x - snapshot.mean) / snapshot.sd,
        (x - snapshot.median) / snapshot.mad_sd,
    )
}

/// 1 for a spike, -1 for a drop, 0 for neither, per the rule's thresholds
/// and direction: every configured threshold must be reached.
fn direction_of(spec: &AnomalySpec, z: f64, m: f64) -> i8 {
    let reaches = |sign: f64| {
        spec.zscore.is_none_or(|t| sign * z >= t) && spec.mad.is_none_or(|t| sign * m >= t)
    };
    if spec.direction.up() && reaches(1.0) {
        1
    } else if spec.direction.down() && reaches(-1.0) {
        -1
    } else {
        0
    }
}

#[allow(clippy::too_many_arguments)]
fn baseline_finding_parts(
    meta: &CorrelationMeta,
    spec: &AnomalySpec,
    snapshot: &Snapshot,
    bucket_start_ns: i64,
    last_ns: i64,
    x: f64,
    z: f64,
    m: f64,
) -> Finding {
    let metric = match (spec.metric, meta.value_fields.first()) {
        (AnomalyMetric::Count, _) => "count".to_owned(),
        (AnomalyMetric::Distinct, Some(field)) => format!("distinct {field}"),
        (AnomalyMetric::Sum, Some(field)) => format!("sum of {field}"),
        (_, None) => "value".to_owned(),
    };
    let way = if z >= 0.0 { "spike" } else { "drop" };
    Finding {
        window_start_ns: bucket_start_ns,
        id_extra: Vec::new(),
        first_seen_ns: bucket_start_ns,
        last_seen_ns: last_ns,
        count: if x.is_finite() && x > 0.0 {
            // Saturating float-to-int cast.
            x.round() as u64
        } else {
            0
        },
        score: finite_or_none(z),
        reason: format!(
            "{way}: {metric} {x} in bucket vs EWMA mean {:.2} sd {:.2} (z {z:.2}), median {:.2} MAD-sd {:.2} (MAD score {m:.2})",
            snapshot.mean, snapshot.sd, snapshot.median, snapshot.mad_sd
        ),
    }
}

/// The nearest centre and its distance.
fn nearest_centre(centres: &[Centre], point: &[f64]) -> Option<(usize, f64)> {
    centres
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let d2: f64 = c
                .point
                .iter()
                .zip(point)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            (index, d2.sqrt())
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
}

/// Seeds or moves a centre with one point (see module docs).
fn learn_centres(
    centres: &mut Vec<Centre>,
    point: &[f64],
    nearest: Option<(usize, f64)>,
    spec: &AnomalySpec,
    warm: bool,
) {
    let seed = centres.len() < spec.centres as usize
        && !warm
        && nearest.is_none_or(|(_, d)| d > spec.min_deviation);
    if seed {
        centres.push(Centre {
            point: point.to_vec(),
            weight: 1.0,
            radius2: 0.0,
        });
        return;
    }
    let Some((index, distance)) = nearest else {
        return;
    };
    let Some(centre) = centres.get_mut(index) else {
        return;
    };
    centre.weight += 1.0;
    let weight = spec.alpha.max(1.0 / centre.weight);
    for (c, p) in centre.point.iter_mut().zip(point) {
        *c += weight * (p - *c);
    }
    centre.radius2 = (1.0 - weight) * centre.radius2 + weight * distance * distance;
    debug_assert!(centre.radius2.is_finite());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_slots() {
        let minute = 60_000_000_000;
        assert_eq!(align(0, minute), 0);
        assert_eq!(align(minute - 1, minute), 0);
        assert_eq!(align(-1, minute), -minute);
        assert_eq!(align(i64::MIN, minute), i64::MIN);
        // 1970-01-01 00:00 UTC was a Thursday: slot 72.
        assert_eq!(season_slot(0), 72);
        // 1970-01-05 00:00 UTC was a Monday: slot 0.
        assert_eq!(season_slot(4 * 24 * HOUR_NS), 0);
    }

    #[test]
    fn networks() {
        let spec = AnomalySpec {
            prefix_v4: Some(24),
            prefix_v6: Some(64),
            ..AnomalySpec::default()
        };
        assert_eq!(
            network_of(b"10.1.2.3", &spec).as_deref(),
            Some("10.1.2.0/24")
        );
        assert_eq!(
            network_of(b"2001:db8::1", &spec).as_deref(),
            Some("2001:db8::/64")
        );
        assert_eq!(network_of(b"not an ip", &spec), None);
        let zero = AnomalySpec {
            prefix_v4: Some(0),
            ..spec
        };
        assert_eq!(network_of(b"10.1.2.3", &zero).as_deref(), Some("0.0.0.0/0"));
    }

    #[test]
    fn ewma_starts_as_exact_mean() {
        let mut slot = Slot::new();
        for x in [2.0, 4.0, 6.0] {
            slot.learn(x, 0.01, 8);
        }
        assert!((slot.mean - 4.0).abs() < 1e-9);
        assert!((slot.var - 8.0 / 3.0).abs() < 1e-9);
    }
}
