//! shardwatch: the appliance binary's library.
//!
//! `engine` wires the other crates into a running node: configuration,
//! executors, shard map and routing, shard workers, alert outputs and the
//! command line. Detection logic lives in `shardwatch-rules`, parsing in
//! `shardwatch-net`, files in `shardwatch-storage`; this crate decides where
//! and when they run.

pub mod alert;
pub mod app;
pub mod config;
pub mod control;
pub mod durable;
pub mod limits;
pub mod liverules;
pub mod normalize;
pub mod output;
pub mod outputs;
pub mod pipeline;
pub mod replay;
pub mod route;
pub mod ruleload;
pub mod schema;
pub mod server;
pub mod shard;
pub mod shardmap;
pub mod sources;
pub mod stats;
pub mod timefmt;
pub mod turns;

/// How this binary was built (`engine/build.rs`): the cargo profile, then
/// `profile-guided` for `scripts/build-pgo.sh`'s result and any
/// `target-cpu`, e.g. `release, profile-guided`.
pub const BUILD: &str = env!("SHARDWATCH_BUILD");

/// `shardwatch --version`: the version and [`BUILD`].
pub const BUILD_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SHARDWATCH_BUILD"),
    ")"
);
