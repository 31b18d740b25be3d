//! Value typing invariants: no panic; `infer` agrees with the parsers; the
//! integer parser agrees with std's within the typed length limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::value::{
    as_bool, as_f64, as_i64, as_ip, as_timestamp_ns, infer, ValueType, TYPED_BYTES_MAX,
};

fuzz_target!(|data: &[u8]| {
    let ty = infer(data);
    match ty {
        ValueType::Int => assert!(as_i64(data).is_some()),
        ValueType::Float => assert!(as_f64(data).is_some_and(f64::is_finite)),
        ValueType::Bool => assert!(as_bool(data).is_some()),
        ValueType::Ip => assert!(as_ip(data).is_some()),
        ValueType::Timestamp => assert!(as_timestamp_ns(data).is_some()),
        ValueType::String => {}
    }
    let std_int = std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    // std takes a leading `+` and any length; the typed views refuse both.
    if data.first() != Some(&b'+') && data.len() <= TYPED_BYTES_MAX {
        assert_eq!(as_i64(data), std_int);
    }
    if as_i64(data).is_some() {
        assert!(as_f64(data).is_some());
    }
    let _ = as_timestamp_ns(data);
});
