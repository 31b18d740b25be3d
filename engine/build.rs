//! Records how this binary was built (`SHARDWATCH_BUILD`): the cargo
//! profile, whether it is a profile-guided build (`scripts/build-pgo.sh`)
//! or that build's instrumented half, and a `target-cpu` other than the
//! default. `shardwatch --version` and the `shardwatch_build_info` metric
//! print it, so that a benchmark says which build it measured.

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').filter(|f| !f.is_empty()).collect();
    // `-Cname=value`, `-C name=value` and `--codegen name=value` alike.
    let mut codegen = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        let flag = flags[i];
        if let Some(option) = flag.strip_prefix("-C").filter(|o| !o.is_empty()) {
            codegen.push(option);
        } else if matches!(flag, "-C" | "--codegen") {
            if let Some(option) = flags.get(i + 1) {
                codegen.push(option);
                i += 1;
            }
        }
        i += 1;
    }
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    let mut build = vec![profile];
    if codegen.iter().any(|o| o.starts_with("profile-use")) {
        build.push("profile-guided".into());
    }
    if codegen.iter().any(|o| o.starts_with("profile-generate")) {
        build.push("instrumented for PGO".into());
    }
    if let Some(cpu) = codegen.iter().find_map(|o| o.strip_prefix("target-cpu=")) {
        build.push(format!("target-cpu={cpu}"));
    }
    println!("cargo:rustc-env=SHARDWATCH_BUILD={}", build.join(", "));
}
