//! Components and workers: round trips, conflicts, order.

use uuid::Uuid;

use super::{
    T0, assert_conflict, component_record, fresh_worker, read, worker_record, write_err, write_ok,
};
use crate::{Outcome, PromiseKey, Storage, WorkerKey, WorkerState, Write};

/// Components round-trip byte for byte; a second component with the same id
/// is a conflict that names the id and changes nothing.
pub async fn components(store: &dyn Storage) {
    let id = Uuid::new_v4();
    let original = component_record(id, "counter", b"\0asm\x01\0\0\0 original bytes");
    let outcomes = write_ok(store, vec![Write::PutComponent(original.clone())]).await;
    assert_eq!(outcomes, vec![Outcome::Done], "{}", store.location());

    let empty = component_record(Uuid::new_v4(), "empty", b"");
    write_ok(store, vec![Write::PutComponent(empty.clone())]).await;

    let all = read(store, "components", store.components().await);
    let mine: Vec<_> = all.iter().filter(|c| c.id == id).collect();
    assert_eq!(
        mine,
        vec![&original],
        "{}: component round trip",
        store.location()
    );
    assert!(
        all.contains(&empty),
        "{}: a component with empty bytes round-trips",
        store.location()
    );

    let again = component_record(id, "impostor", b"other bytes");
    let error = write_err(store, vec![Write::PutComponent(again)]).await;
    assert_conflict(store, &error, &id.to_string());
    let all = read(store, "components", store.components().await);
    let mine: Vec<_> = all.iter().filter(|c| c.id == id).collect();
    assert_eq!(
        mine,
        vec![&original],
        "{}: a refused duplicate leaves the first component",
        store.location()
    );
}

/// Workers round-trip (arguments and environment in order, empty strings,
/// the awaited promise); `UpdateWorker` replaces the state; a duplicate key is
/// a conflict naming it; `workers()` is ordered by key.
pub async fn workers(store: &dyn Storage) {
    let key = fresh_worker("round-trip");
    let mut record = worker_record(&key);
    record.state = WorkerState {
        status: "suspended".to_owned(),
        last_error: Some("an earlier failure".to_owned()),
        awaiting: Some(PromiseKey {
            worker: fresh_worker("promiser"),
            index: 7,
        }),
    };
    write_ok(store, vec![Write::CreateWorker(record.clone())]).await;
    assert_eq!(
        find_worker(store, &key).await.as_ref(),
        Some(&record),
        "{}: worker round trip",
        store.location()
    );

    let state = WorkerState {
        status: "idle".to_owned(),
        last_error: None,
        awaiting: None,
    };
    let outcomes = write_ok(
        store,
        vec![Write::UpdateWorker {
            worker: key.clone(),
            state: state.clone(),
        }],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Done], "{}", store.location());
    let updated = find_worker(store, &key).await;
    assert_eq!(
        updated.as_ref().map(|w| &w.state),
        Some(&state),
        "{}: update-worker replaces the state",
        store.location()
    );
    assert_eq!(
        updated.map(|w| (w.args, w.env, w.created_at)),
        Some((record.args.clone(), record.env.clone(), T0)),
        "{}: update-worker keeps the configuration",
        store.location()
    );

    let mut duplicate = worker_record(&key);
    duplicate.args = vec!["other".to_owned()];
    let error = write_err(store, vec![Write::CreateWorker(duplicate)]).await;
    assert_conflict(store, &error, &key.name);
    assert_eq!(
        find_worker(store, &key).await.map(|w| w.args),
        Some(record.args.clone()),
        "{}: a refused duplicate leaves the first worker",
        store.location()
    );

    // Several names under one component and another component: the whole
    // list is ordered by (component, name).
    let component = Uuid::new_v4();
    let names = ["b", "a", "c", "a-longer", "B"];
    let batch = names
        .iter()
        .map(|name| {
            Write::CreateWorker(worker_record(&WorkerKey {
                component,
                name: (*name).to_owned(),
            }))
        })
        .collect();
    write_ok(store, batch).await;
    let all = read(store, "workers", store.workers().await);
    let keys: Vec<&WorkerKey> = all.iter().map(|w| &w.key).collect();
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "{}: workers() must be ordered by key, got {keys:?}",
        store.location()
    );
    let mine: Vec<&str> = all
        .iter()
        .filter(|w| w.key.component == component)
        .map(|w| w.key.name.as_str())
        .collect();
    assert_eq!(
        mine,
        vec!["B", "a", "a-longer", "b", "c"],
        "{}",
        store.location()
    );
}

async fn find_worker(store: &dyn Storage, key: &WorkerKey) -> Option<crate::WorkerRecord> {
    read(store, "workers", store.workers().await)
        .into_iter()
        .find(|w| &w.key == key)
}
