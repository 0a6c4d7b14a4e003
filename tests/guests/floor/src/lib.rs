//! Benchmark baseline: an invocation that makes exactly one host call.
//!
//! The guest does not import `golem:api`, so timing `wait-once` against a host
//! that answers `wait` immediately measures what any invocation costs before
//! promises or the operation log are involved.

wit_bindgen::generate!({
    world: "floor",
});

struct Component;

impl Guest for Component {
    fn wait_once() -> u32 {
        vow_bench::floor::waiter::wait()
    }
}

export!(Component);
