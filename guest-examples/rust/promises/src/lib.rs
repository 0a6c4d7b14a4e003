//! Walks through the life of one promise inside a single invocation.
//!
//! `run` creates a promise, completes it twice (only the first completion
//! counts), awaits it (which returns at once, since it is already complete),
//! deletes it, and returns a one-line account of what it saw.

wit_bindgen::generate!({
    inline: r"
        package vow-examples:promises;

        world promises {
            import golem:api/host@1.1.0;

            /// Runs the walkthrough and describes what happened.
            export run: func() -> string;
        }
    ",
    // The repository's WIT directory, where `golem:api/host@1.1.0` lives.
    path: "../../../wit",
    // Reuse the SDK's bindings instead of generating a second copy.
    with: {
        "golem:api/host@1.1.0": vow_guest::host,
        "golem:rpc/types@0.1.1": vow_guest::bindings::golem::rpc::types,
        "wasi:clocks/monotonic-clock@0.2.0": vow_guest::bindings::wasi::clocks::monotonic_clock,
        "wasi:io/poll@0.2.0": vow_guest::bindings::wasi::io::poll,
    },
});

use vow_guest::Promise;

struct Component;

impl Guest for Component {
    fn run() -> String {
        let promise = Promise::new();
        let first = promise.complete(b"hello world");
        let second = promise.complete(b"something else");
        let payload = promise.wait();
        let id = promise.to_string();
        promise.delete();
        format!(
            "promise {id}: first completion {first}, second completion {second}, \
             awaited {:?}, deleted",
            String::from_utf8_lossy(&payload)
        )
    }
}

export!(Component);
