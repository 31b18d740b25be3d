//! The per-event path allocates nothing once warm: every golden input line
//! goes through `parse_and_extract` with one reused `DecodeScratch` while a
//! counting global allocator watches this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use shardwatch_net::fields::Fields;
use shardwatch_net::syslog::ParseContext;
use shardwatch_net::{parse_and_extract, DecodeScratch};

/// Counts allocations made on a thread while it is armed.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may run while thread-locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CTX: ParseContext = ParseContext {
    now_ns: 1_795_780_800_000_000_000,
    default_offset_s: 0,
};

#[test]
fn warm_parse_and_extract_does_not_allocate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read(&path).expect("golden input");
            inputs.extend(text.split(|&b| b == b'\n').map(<[u8]>::to_vec));
        }
    }
    assert!(inputs.len() > 100, "too few golden lines: {}", inputs.len());

    let mut scratch = DecodeScratch::new();
    let run = |scratch: &mut DecodeScratch| {
        let mut total = 0usize;
        for line in &inputs {
            let mut fields = Fields::new();
            if parse_and_extract(line, &CTX, scratch, &mut fields).is_ok() {
                total += fields.len();
            }
        }
        total
    };
    // Warm-up: the arena and simd-json's buffers grow to the largest line.
    let warm = run(&mut scratch);
    ARMED.with(|a| a.set(true));
    let again = run(&mut scratch);
    ARMED.with(|a| a.set(false));
    let allocations = COUNT.with(Cell::get);
    assert_eq!(warm, again, "a reused scratch changed the output");
    assert_eq!(allocations, 0, "allocations on the warm per-event path");
}
