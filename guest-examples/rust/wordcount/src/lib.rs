//! Map over a data set, count, then report, in workers of their own.
//!
//! `run` counts the words of a text line by line: one `when` per line runs
//! `count-words` in a new worker, with a timeout; a `then` of `guard` on
//! each turns its outcome, count or rejection, into a value; an `all` joins
//! them, and a `then` of `report` writes the report. `run` waits for it.
//!
//! A line that starts with `!stall` is never counted: its `count-words`
//! leaves its promise pending, so the promise times out and the report says
//! so. Every other line's `count-words` settles its promise itself,
//! through `current()`, to show a function settling its promise rather than
//! returning the value.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vow_guest::bindings::vow::host::promises as wit;
use vow_guest::compose::{self, Options, Promise};

wit_bindgen::generate!({
    inline: r"
        package vow-examples:wordcount;

        world wordcount {
            import golem:api/host@1.1.0;
            import vow:host/promises@0.1.0;
            use vow:host/promises@0.1.0.{settlement, error};

            /// Counts the words of `text` line by line, each line in a
            /// worker of its own given `timeout-ms` to answer; returns the
            /// report.
            export run: func(text: string, timeout-ms: u64) -> result<string, string>;

            /// Counts the words of one line (the input is its JSON) and
            /// settles its own promise with the count.
            export count-words: func(input: list<u8>);
            /// A line's outcome as a value: its count, or why it has none.
            export guard: func(settled: settlement) -> list<u8>;
            /// The report of all outcomes.
            export report: func(settled: settlement) -> result<list<u8>, error>;
        }
    ",
    // The repository's WIT directory.
    path: "../../../wit",
    // Reuse the SDK's bindings instead of generating a second copy.
    with: {
        "golem:api/host@1.1.0": vow_guest::host,
        "vow:host/promises@0.1.0": vow_guest::bindings::vow::host::promises,
        "golem:rpc/types@0.1.1": vow_guest::bindings::golem::rpc::types,
        "wasi:clocks/monotonic-clock@0.2.0": vow_guest::bindings::wasi::clocks::monotonic_clock,
        "wasi:io/poll@0.2.0": vow_guest::bindings::wasi::io::poll,
    },
});

/// What became of one line.
#[derive(Serialize, Deserialize)]
struct Outcome {
    words: Option<usize>,
    error: Option<String>,
}

struct Component;

impl Guest for Component {
    fn run(text: String, timeout_ms: u64) -> Result<String, String> {
        let timeout = Options::timeout(Duration::from_millis(timeout_ms));
        let outcomes: Vec<Promise<Outcome>> = text
            .lines()
            .map(|line| {
                let count: Promise<usize> = compose::when("count-words", line, timeout.clone())?;
                count.then("guard", Options::default())
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let report: Promise<String> = compose::all(&outcomes, Options::default())
            .and_then(|all| all.then("report", Options::default()))
            .map_err(|e| e.to_string())?;
        report.wait().map_err(|rejection| rejection.to_string())
    }

    fn count_words(input: Vec<u8>) {
        let Some(promise) = compose::current::<usize>() else {
            return;
        };
        match compose::decode::<String>(&input) {
            Ok(line) if line.starts_with("!stall") => {}
            Ok(line) => {
                promise.resolve(&line.split_whitespace().count());
            }
            Err(rejection) => {
                promise.settle(Err(rejection));
            }
        }
    }

    fn guard(settled: wit::Settlement) -> Vec<u8> {
        let outcome = match compose::settled::<usize>(settled) {
            Ok(words) => Outcome {
                words: Some(words),
                error: None,
            },
            Err(rejection) => Outcome {
                words: None,
                error: Some(rejection.to_string()),
            },
        };
        compose::encode(&outcome)
    }

    fn report(settled: wit::Settlement) -> Result<Vec<u8>, wit::Error> {
        let outcomes = compose::settled_all::<Outcome>(settled);
        compose::settle(outcomes.map(|outcomes| write_report(&outcomes)))
    }
}

fn write_report(outcomes: &[Outcome]) -> String {
    let counted: Vec<usize> = outcomes.iter().filter_map(|o| o.words).collect();
    let mut report = format!(
        "{} of {} lines counted, {} words",
        counted.len(),
        outcomes.len(),
        counted.iter().sum::<usize>()
    );
    for (line, outcome) in outcomes.iter().enumerate() {
        if let Some(error) = &outcome.error {
            report.push_str(&format!("; line {}: {error}", line + 1));
        }
    }
    report
}

export!(Component);
