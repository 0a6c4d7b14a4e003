//! Host bindings generated from the top-level `wit/` folder.
//!
//! Only the calls that wait for the promise dispatcher or the store are
//! async: `await-promise`, `complete-promise`, `oplog-commit`,
//! `set-oplog-index`, and Vow's `reject`, `wait`, `poll`, `wait-any`,
//! `wait-all` and `link`. Everything else answers synchronously, which is cheaper
//! on the guest's fiber. Every import is trappable so a guest mistake (an
//! unknown promise, an unsupported call) becomes a trap with a clear message.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "vow:host/guest",
    imports: {
        "golem:api/host.await-promise": async | trappable | tracing,
        "golem:api/host.complete-promise": async | trappable | tracing,
        "golem:api/host.oplog-commit": async | trappable | tracing,
        "golem:api/host.set-oplog-index": async | trappable | tracing,
        "vow:host/promises.reject": async | trappable | tracing,
        "vow:host/promises.wait": async | trappable | tracing,
        "vow:host/promises.poll": async | trappable | tracing,
        "vow:host/promises.wait-any": async | trappable | tracing,
        "vow:host/promises.wait-all": async | trappable | tracing,
        "vow:host/promises.link": async | trappable | tracing,
        default: trappable | tracing,
    },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
        "golem:api/host.get-workers": crate::host::WorkerListing,
    },
});
