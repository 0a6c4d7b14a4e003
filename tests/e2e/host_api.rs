//! Every other `golem:api/host` function, round-tripped through a guest.

use anyhow::Result;
use vow_runtime::{Error, Val, WorkerConfig};

use crate::support::*;

fn record(fields: Vec<(&str, Val)>) -> Val {
    Val::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[tokio::test]
async fn oplog_index_and_atomic_regions() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "regions").await?;
    // 1 create, 2 invocation started: get-oplog-index reports the latest entry.
    assert_eq!(
        executor.invoke(&worker, "oplog-index", vec![]).await?,
        vec![Val::U64(2)]
    );
    // 3 finished, 4 started, 5 begin, 6 end.
    assert_eq!(
        executor.invoke(&worker, "atomic-region", vec![]).await?,
        vec![Val::Tuple(vec![Val::U64(5), Val::U64(6)])]
    );
    executor.invoke(&worker, "commit", vec![Val::U8(1)]).await?;
    Ok(())
}

#[tokio::test]
async fn idempotency_keys_are_fresh_v4_uuids() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "keys").await?;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let key = single(executor.invoke(&worker, "idempotency-key", vec![]).await?)?;
        let high = u64_of(field(&key, "high-bits")?)?;
        let low = u64_of(field(&key, "low-bits")?)?;
        let uuid = uuid_of(high, low);
        assert_eq!(uuid.get_version_num(), 4);
        keys.push(uuid);
    }
    assert_ne!(keys[0], keys[1]);
    Ok(())
}

fn uuid_of(high: u64, low: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(high, low)
}

#[tokio::test]
async fn per_worker_settings_round_trip() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "settings").await?;
    let default = single(executor.invoke(&worker, "get-retry-policy", vec![]).await?)?;
    assert_eq!(field(&default, "max-attempts")?, &Val::U32(3));
    let policy = record(vec![
        ("max-attempts", Val::U32(7)),
        ("min-delay", Val::U64(5)),
        ("max-delay", Val::U64(500)),
        ("multiplier", Val::Float64(1.5)),
        ("max-jitter-factor", Val::Option(None)),
    ]);
    assert_eq!(
        executor
            .invoke(&worker, "retry-policy-roundtrip", vec![policy.clone()])
            .await?,
        vec![policy]
    );
    let level = Val::Variant("persist-nothing".into(), None);
    assert_eq!(
        executor
            .invoke(&worker, "persistence-roundtrip", vec![level.clone()])
            .await?,
        vec![level]
    );
    assert_eq!(
        executor
            .invoke(&worker, "idempotence-roundtrip", vec![Val::Bool(false)])
            .await?,
        vec![Val::Tuple(vec![Val::Bool(true), Val::Bool(false)])]
    );
    // Settings are per worker.
    let other = start(&executor, component, "other").await?;
    let default_again = single(executor.invoke(&other, "get-retry-policy", vec![]).await?)?;
    assert_eq!(default_again, default);
    Ok(())
}

#[tokio::test]
async fn metadata_of_self_and_others() -> Result<()> {
    let (executor, component) = harness().await?;
    let config = WorkerConfig {
        args: vec!["a1".into()],
        env: vec![("K".into(), "V".into())],
    };
    let me = executor.start_worker(component, "me", config).await?;
    let meta = single(executor.invoke(&me, "self-metadata", vec![]).await?)?;
    assert_eq!(field(&meta, "worker-id")?, &worker_val(&me));
    assert_eq!(
        field(&meta, "args")?,
        &Val::List(vec![Val::String("a1".into())])
    );
    assert_eq!(
        field(&meta, "env")?,
        &Val::List(vec![Val::Tuple(vec![
            Val::String("K".into()),
            Val::String("V".into())
        ])])
    );
    assert_eq!(field(&meta, "status")?, &Val::Enum("running".into()));
    assert_eq!(field(&meta, "component-version")?, &Val::U64(0));

    let other = start(&executor, component, "other").await?;
    let found = single(
        executor
            .invoke(&me, "worker-metadata", vec![worker_val(&other)])
            .await?,
    )?;
    let Val::Option(Some(found)) = found else {
        anyhow::bail!("expected some metadata, got {found:?}");
    };
    assert_eq!(field(&found, "worker-id")?, &worker_val(&other));
    assert_eq!(field(&found, "status")?, &Val::Enum("idle".into()));
    let ghost = vow_runtime::WorkerId::new(component, "ghost");
    assert_eq!(
        executor
            .invoke(&me, "worker-metadata", vec![worker_val(&ghost)])
            .await?,
        vec![Val::Option(None)]
    );
    Ok(())
}

fn names(listing: &Val) -> Result<Vec<String>> {
    let Val::List(items) = listing else {
        anyhow::bail!("expected a list, got {listing:?}");
    };
    items
        .iter()
        .map(|m| match field(field(m, "worker-id")?, "worker-name")? {
            Val::String(s) => Ok(s.clone()),
            other => anyhow::bail!("expected a string, got {other:?}"),
        })
        .collect()
}

fn any_of(groups: Vec<Vec<Val>>) -> Val {
    Val::Option(Some(Box::new(record(vec![(
        "filters",
        Val::List(
            groups
                .into_iter()
                .map(|g| record(vec![("filters", Val::List(g))]))
                .collect(),
        ),
    )]))))
}

fn name_filter(comparator: &str, value: &str) -> Val {
    Val::Variant(
        "name".into(),
        Some(Box::new(record(vec![
            ("comparator", Val::Enum(comparator.into())),
            ("value", Val::String(value.into())),
        ]))),
    )
}

fn env_filter(name: &str, comparator: &str, value: &str) -> Val {
    Val::Variant(
        "env".into(),
        Some(Box::new(record(vec![
            ("name", Val::String(name.into())),
            ("comparator", Val::Enum(comparator.into())),
            ("value", Val::String(value.into())),
        ]))),
    )
}

fn compare(case: &str, comparator: &str, value: Val) -> Val {
    Val::Variant(
        case.into(),
        Some(Box::new(record(vec![
            ("comparator", Val::Enum(comparator.into())),
            ("value", value),
        ]))),
    )
}

#[tokio::test]
async fn get_workers_applies_every_filter_kind() -> Result<()> {
    let (executor, component) = harness().await?;
    let lister = start(&executor, component, "lister").await?;
    for (name, region) in [("eu-1", "eu"), ("eu-2", "eu"), ("us-1", "us")] {
        let config = WorkerConfig {
            args: vec![],
            env: vec![("REGION".into(), region.into())],
        };
        executor.start_worker(component, name, config).await?;
    }
    let list = |filter: Val| {
        let executor = executor.clone();
        let lister = lister.clone();
        async move {
            let out = executor
                .invoke(
                    &lister,
                    "list-workers",
                    vec![component_val(component), filter, Val::Bool(true)],
                )
                .await?;
            names(&single(out)?)
        }
    };
    assert_eq!(
        list(Val::Option(None)).await?,
        ["eu-1", "eu-2", "lister", "us-1"]
    );
    assert_eq!(
        list(any_of(vec![vec![name_filter("like", "eu-%")]])).await?,
        ["eu-1", "eu-2"]
    );
    assert_eq!(
        list(any_of(vec![vec![name_filter("not-like", "%-%")]])).await?,
        ["lister"]
    );
    assert_eq!(
        list(any_of(vec![vec![name_filter("equal", "us-1")]])).await?,
        ["us-1"]
    );
    assert_eq!(
        list(any_of(vec![vec![
            env_filter("REGION", "equal", "eu"),
            name_filter("not-equal", "eu-1")
        ]]))
        .await?,
        ["eu-2"]
    );
    // OR of two groups.
    assert_eq!(
        list(any_of(vec![
            vec![name_filter("equal", "us-1")],
            vec![name_filter("equal", "eu-1")]
        ]))
        .await?,
        ["eu-1", "us-1"]
    );
    // The lister is running while it lists; the others are idle.
    assert_eq!(
        list(any_of(vec![vec![compare(
            "status",
            "equal",
            Val::Enum("running".into())
        )]]))
        .await?,
        ["lister"]
    );
    assert_eq!(
        list(any_of(vec![vec![compare(
            "version",
            "greater",
            Val::U64(0)
        )]]))
        .await?,
        Vec::<String>::new()
    );
    assert_eq!(
        list(any_of(vec![vec![compare(
            "created-at",
            "greater",
            Val::U64(0)
        )]]))
        .await?
        .len(),
        4
    );
    // Another component's workers are not listed.
    let (other_executor, _) = (executor.clone(), ());
    let elsewhere = other_executor
        .add_component_file(vow_tests::guest("promises")?)
        .await?;
    start(&other_executor, elsewhere, "not-listed").await?;
    assert_eq!(list(Val::Option(None)).await?.len(), 4);
    Ok(())
}

#[tokio::test]
async fn calls_vow_cannot_honour_trap_with_a_clear_message() -> Result<()> {
    let (executor, component) = harness().await?;
    let a = start(&executor, component, "a").await?;
    let err = executor
        .invoke(&a, "set-oplog-index", vec![Val::U64(1)])
        .await;
    match err {
        Err(Error::Trap { message, .. }) => assert!(
            message.contains(
                "set-oplog-index(1): a worker can only go back within its current invocation, to an index from 2 (its start)"
            ),
            "{message}"
        ),
        other => anyhow::bail!("expected a trap, got {other:?}"),
    }
    let b = start(&executor, component, "b").await?;
    let err = executor
        .invoke(
            &b,
            "update-worker",
            vec![worker_val(&a), Val::U64(2), Val::Enum("automatic".into())],
        )
        .await;
    match err {
        Err(Error::Trap { message, .. }) => assert!(
            message.contains(&format!(
                "update-worker({a}, version 2) is not supported yet"
            )),
            "{message}"
        ),
        other => anyhow::bail!("expected a trap, got {other:?}"),
    }
    Ok(())
}
