//! What decoding a request's envelope costs in memory: a caller's credentials
//! are read from a body of any size without the rest of it becoming values,
//! so a large body from a caller nobody has checked costs little beyond its
//! own bytes. Measured with a counting allocator (this test binary's own).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sg_protocol::Envelope;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A `create` whose params hold `n` small objects: about 30 bytes of JSON each,
/// several times that as values.
fn big_body(n: usize) -> Vec<u8> {
    let mut body = br#"{"method_name":"create","params":[{"script_name":"who","script_key":"nope"},{"type":"Shot","fields":["#.to_vec();
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(format!(r#"{{"field_name":"f{i}","value":[1,2]}}"#).as_bytes());
    }
    body.extend_from_slice(b"]}]}");
    body
}

#[test]
fn the_envelope_of_a_large_body_costs_next_to_nothing() {
    let body = big_body(150_000);
    assert!(body.len() > 5_000_000, "{} bytes", body.len());
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let envelope = Envelope::from_slice(&body).expect("a well-formed body");
    let auth = envelope.auth.as_ref().expect("an auth block");
    assert_eq!(auth.script_name.as_deref(), Some("who"));
    assert_eq!(envelope.method_name, "create");
    let params_len = envelope.params.map(|p| p.get().len()).unwrap_or(0);
    assert!(params_len > 5_000_000);
    let extra = PEAK.load(Ordering::SeqCst) - before;
    assert!(
        extra < 1_000_000,
        "decoding the envelope of a {} byte body allocated {extra} bytes at its peak",
        body.len()
    );
    // The params, decoded after the credentials, cost what values cost: many
    // times the envelope (what every request cost before credentials were read).
    drop(envelope);
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let request = sg_protocol::Request::from_slice(&body).expect("valid params");
    let whole = PEAK.load(Ordering::SeqCst) - before;
    assert!(request.params.is_some());
    assert!(whole > 20 * extra.max(1), "whole {whole}, envelope {extra}");
}
