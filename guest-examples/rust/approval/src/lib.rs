//! Parks a worker until a person approves something.
//!
//! `request-approval` creates a promise, prints the command-line hint an
//! operator needs to complete it, and suspends until someone does. Whatever
//! payload they send becomes part of the answer.

use std::io::Write;

wit_bindgen::generate!({
    inline: r"
        package vow-examples:approval;

        world approval {
            import golem:api/host@1.1.0;

            /// Waits until someone completes the printed promise, then returns
            /// the subject and their answer.
            export request-approval: func(subject: string) -> string;
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
    fn request_approval(subject: String) -> String {
        let promise = Promise::new();
        let mut stdout = std::io::stdout().lock();
        // The worker can wait without anyone reading the hint, so a failed
        // write is not a reason to give up.
        let _ = writeln!(
            stdout,
            "approval needed for \"{subject}\": complete promise {promise}"
        );
        let _ = stdout.flush();
        drop(stdout);
        let payload = promise.wait();
        format!("\"{subject}\": {}", String::from_utf8_lossy(&payload))
    }
}

export!(Component);
