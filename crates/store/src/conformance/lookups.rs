//! Reads of one record by its key: what a node of a cluster uses to re-read
//! what another node changed.

use std::fmt::Debug;

use bytes::Bytes;
use uuid::Uuid;

use super::{T0, component_record, fresh_worker, read, worker_record, write_ok};
use crate::{
    PromiseKey, PromiseRecord, PromiseSpec, PromiseState, ReactionRecord, Storage, WorkerKey,
    WorkerRecord, WorkerState, Write,
};

/// `component`, `worker`, `promise` and `reaction` return exactly the
/// record the full list holds for that key (promises pending, completed and
/// rejected), see an update, and return `None` for keys that were never
/// written or were deleted (with `DeletePromise` or `DeleteWorker`);
/// `workers_named`, `promises_named` and `reactions_named` return the
/// records of the keys asked for that exist.
pub async fn lookups(store: &dyn Storage) {
    let component = component_record(Uuid::new_v4(), "looked-up", b"\0asm lookups");
    let worker = |name: &str| WorkerKey {
        component: component.id,
        name: name.to_owned(),
    };
    let (first, second) = (worker("first"), worker("second"));
    let key = |worker: &WorkerKey, index| PromiseKey {
        worker: worker.clone(),
        index,
    };
    let (pending, completed, rejected) = (key(&first, 1), key(&first, 2), key(&first, 3));
    let spec = PromiseSpec {
        deadline: Some(T0 + 60_000),
        retention: Some(3_600_000),
        options: Bytes::from_static(b"typed"),
    };
    let promise = |key: &PromiseKey, created_at, state| PromiseRecord {
        key: key.clone(),
        created_at,
        state,
        spec: PromiseSpec::default(),
    };
    let promise_records = [
        PromiseRecord {
            spec: spec.clone(),
            ..promise(&pending, T0, PromiseState::Pending)
        },
        promise(
            &completed,
            T0 + 1,
            PromiseState::Completed {
                data: Bytes::from_static(b"done"),
                at: T0 + 3,
            },
        ),
        promise(
            &rejected,
            T0 + 2,
            PromiseState::Rejected {
                error: Bytes::from_static(b"refused"),
                at: T0 + 3,
            },
        ),
    ];
    let mut suspended = worker_record(&second);
    suspended.state = WorkerState {
        status: "suspended".to_owned(),
        last_error: Some("an earlier failure".to_owned()),
        awaiting: Some(pending.clone()),
    };
    let combine = ReactionRecord {
        target: pending.clone(),
        sources: vec![completed.clone(), rejected.clone()],
        spec: Bytes::from_static(b"all"),
        created_at: T0 + 4,
    };
    let forward = ReactionRecord {
        target: rejected.clone(),
        sources: vec![key(&second, 9)],
        spec: Bytes::new(),
        created_at: T0 + 5,
    };
    write_ok(
        store,
        vec![
            Write::PutComponent(component.clone()),
            Write::CreateWorker(worker_record(&first)),
            Write::CreateWorker(suspended.clone()),
            Write::CreatePromise {
                key: pending.clone(),
                at: T0,
                spec,
            },
            Write::CreatePromise {
                key: completed.clone(),
                at: T0 + 1,
                spec: Default::default(),
            },
            Write::CreatePromise {
                key: rejected.clone(),
                at: T0 + 2,
                spec: Default::default(),
            },
            Write::CompletePromise {
                key: completed.clone(),
                data: Bytes::from_static(b"done"),
                at: T0 + 3,
            },
            Write::RejectPromise {
                key: rejected.clone(),
                error: Bytes::from_static(b"refused"),
                at: T0 + 3,
            },
            Write::PutReaction(combine.clone()),
            Write::PutReaction(forward.clone()),
        ],
    )
    .await;

    // Each read of one record equals the list's record for that key.
    let components = read(store, "components", store.components().await);
    let listed = components.iter().find(|c| c.id == component.id);
    let single = read(store, "a component", store.component(component.id).await);
    same(
        store,
        "component",
        &component.id,
        single,
        listed,
        &component,
    );

    let workers = read(store, "workers", store.workers().await);
    for expected in [&worker_record(&first), &suspended] {
        let listed = workers.iter().find(|w| w.key == expected.key);
        let single = read(store, "a worker", store.worker(&expected.key).await);
        same(store, "worker", &expected.key, single, listed, expected);
    }

    let promises = read(store, "promises", store.promises().await);
    for expected in &promise_records {
        let listed = promises.iter().find(|p| p.key == expected.key);
        let single = read(store, "a promise", store.promise(&expected.key).await);
        same(store, "promise", &expected.key, single, listed, expected);
    }

    let reactions = read(store, "reactions", store.reactions().await);
    for expected in [&combine, &forward] {
        let listed = reactions.iter().find(|r| r.target == expected.target);
        let single = read(store, "a reaction", store.reaction(&expected.target).await);
        same(
            store,
            "reaction",
            &expected.target,
            single,
            listed,
            expected,
        );
    }

    // Reads of several records at once: those that exist, whatever else
    // is asked for alongside them.
    let mut named = read(
        store,
        "workers by key",
        store
            .workers_named(&[second.clone(), worker("third"), first.clone()])
            .await,
    );
    named.sort_by(|a, b| a.key.name.cmp(&b.key.name));
    assert_eq!(
        named,
        [worker_record(&first), suspended.clone()],
        "{}: workers_named",
        store.location()
    );
    let asked = [
        rejected.clone(),
        key(&first, 4),
        pending.clone(),
        key(&first, u64::MAX),
        completed.clone(),
    ];
    let mut named = read(store, "promises by key", store.promises_named(&asked).await);
    named.sort_by_key(|p| p.key.index);
    assert_eq!(
        named,
        promise_records,
        "{}: promises_named",
        store.location()
    );
    let mut named = read(
        store,
        "reactions by key",
        store.reactions_named(&asked).await,
    );
    named.sort_by_key(|r| r.target.index);
    assert_eq!(
        named,
        [combine.clone(), forward.clone()],
        "{}: reactions_named",
        store.location()
    );
    let none = read(store, "no workers", store.workers_named(&[]).await);
    assert_eq!(none, [], "{}: workers_named of nothing", store.location());

    // An update is seen by the next read.
    let idle = WorkerState {
        status: "idle".to_owned(),
        last_error: None,
        awaiting: None,
    };
    write_ok(
        store,
        vec![Write::UpdateWorker {
            worker: second.clone(),
            state: idle.clone(),
        }],
    )
    .await;
    let updated = WorkerRecord {
        state: idle,
        ..suspended.clone()
    };
    assert_eq!(
        read(store, "a worker", store.worker(&second).await),
        Some(updated),
        "{}: worker() sees update-worker",
        store.location()
    );

    // Keys never written.
    let stranger = fresh_worker("first");
    let missing_component = read(store, "a component", store.component(Uuid::new_v4()).await);
    assert_eq!(missing_component, None, "{}", store.location());
    for missing in [worker("third"), stranger.clone()] {
        let found = read(store, "a worker", store.worker(&missing).await);
        assert_eq!(found, None, "{}: worker {missing}", store.location());
    }
    for missing in [
        key(&first, 4),
        key(&first, 0),
        key(&first, u64::MAX),
        key(&second, 1),
        key(&stranger, 1),
    ] {
        let found = read(store, "a promise", store.promise(&missing).await);
        assert_eq!(found, None, "{}: promise {missing}", store.location());
        let found = read(store, "a reaction", store.reaction(&missing).await);
        assert_eq!(found, None, "{}: reaction {missing}", store.location());
    }
    let found = read(store, "a reaction", store.reaction(&completed).await);
    assert_eq!(
        found,
        None,
        "{}: a promise without a reaction has none",
        store.location()
    );

    // Deleting a promise deletes its reaction and leaves the others.
    write_ok(store, vec![Write::DeletePromise(pending.clone())]).await;
    let found = read(store, "a promise", store.promise(&pending).await);
    assert_eq!(found, None, "{}: deleted promise", store.location());
    let found = read(store, "a reaction", store.reaction(&pending).await);
    assert_eq!(
        found,
        None,
        "{}: the reaction of a deleted promise",
        store.location()
    );
    let found = read(store, "a reaction", store.reaction(&rejected).await);
    assert_eq!(found, Some(forward), "{}", store.location());
    let found = read(store, "a promise", store.promise(&completed).await);
    assert_eq!(
        found.as_ref(),
        Some(&promise_records[1]),
        "{}",
        store.location()
    );

    // Deleting a worker deletes its promises and their reactions, and
    // leaves the other worker and the component.
    write_ok(store, vec![Write::DeleteWorker(first.clone())]).await;
    let found = read(store, "a worker", store.worker(&first).await);
    assert_eq!(found, None, "{}: deleted worker", store.location());
    for key in [&completed, &rejected] {
        let found = read(store, "a promise", store.promise(key).await);
        assert_eq!(found, None, "{}: promise {key}", store.location());
        let found = read(store, "a reaction", store.reaction(key).await);
        assert_eq!(found, None, "{}: reaction {key}", store.location());
    }
    let found = read(store, "a worker", store.worker(&second).await);
    assert_eq!(
        found.map(|w| w.key),
        Some(second),
        "{}: the other worker stays",
        store.location()
    );
    let found = read(store, "a component", store.component(component.id).await);
    assert_eq!(found, Some(component), "{}", store.location());
}

/// Expects the read of one record to equal both the expected record and
/// the one the full list holds for its key.
fn same<K: std::fmt::Display, T: PartialEq + Debug>(
    store: &dyn Storage,
    what: &str,
    key: &K,
    single: Option<T>,
    listed: Option<&T>,
    expected: &T,
) {
    assert_eq!(
        single.as_ref(),
        Some(expected),
        "{}: {what} {key} read alone",
        store.location()
    );
    assert_eq!(
        listed,
        Some(expected),
        "{}: {what} {key} in the full list",
        store.location()
    );
}
