//! The PostgreSQL backend against a real server: the conformance suite of
//! every backend, schema versions and connection errors.
//!
//! Needs `VOW_TEST_DATABASE_URL` (a role that may create databases and
//! roles; the README's test command starts a throwaway server and sets it).
//! Without it these tests fail, unless `VOW_SKIP_POSTGRES=1` says to skip
//! them (see `vow_tests::postgres_server`).

use anyhow::Context as _;
use vow_store::{Error, Storage as _};
use vow_store_postgres::{PostgresOptions, PostgresStorage, SCHEMA_VERSION};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_storage_conforms() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let store = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    vow_store::conformance::run_all(&store).await;
    Ok(())
}

#[tokio::test]
async fn opening_twice_keeps_the_schema_and_a_newer_one_is_refused() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    drop(PostgresStorage::connect(&url, PostgresOptions::default()).await?);
    let store = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    assert!(store.components().await?.is_empty());

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let newer = SCHEMA_VERSION as i32 + 3;
    client
        .execute("UPDATE vow_schema SET version = $1", &[&newer])
        .await?;
    match PostgresStorage::connect(&url, PostgresOptions::default()).await {
        Err(Error::NewerSchema {
            found, supported, ..
        }) => assert_eq!((found, supported), (newer as u32, SCHEMA_VERSION)),
        other => anyhow::bail!("expected NewerSchema, got {other:?}"),
    }
    Ok(())
}

/// A store at schema 1 (before promise rejection and reactions) is
/// migrated when opened and keeps its promises, which read back with the
/// default spec.
#[tokio::test]
async fn a_version_1_store_is_migrated_and_keeps_its_promises() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let key = vow_store::PromiseKey {
        worker: vow_store::WorkerKey {
            component: uuid::Uuid::new_v4(),
            name: "old".to_owned(),
        },
        index: 3,
    };
    {
        let store = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
        store
            .write(vec![
                vow_store::Write::CreatePromise {
                    key: key.clone(),
                    at: 5,
                    spec: Default::default(),
                },
                vow_store::Write::CompletePromise {
                    key: key.clone(),
                    data: b"done".to_vec().into(),
                    at: 6,
                },
            ])
            .await?;
    }
    // Back to schema 1, as version 1 of this crate left it (without what
    // versions 2 to 4 added).
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "DROP TRIGGER vow_promises_changed ON promises;
             DROP TRIGGER vow_workers_changed ON workers;
             DROP TRIGGER vow_components_changed ON components;
             DROP TABLE reactions, vow_nodes, vow_owners;
             DROP FUNCTION vow_key_changed(), vow_worker_changed(), vow_component_changed(),
                 vow_notify(text, uuid, bigint, text);
             DROP SEQUENCE vow_epochs;
             ALTER TABLE promises DROP COLUMN rejected, DROP COLUMN deadline,
                 DROP COLUMN retention, DROP COLUMN options;
             UPDATE vow_schema SET version = 1;",
        )
        .await?;
    let store = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    let version: i32 = client
        .query_one("SELECT version FROM vow_schema", &[])
        .await?
        .get(0);
    assert_eq!(version as u32, SCHEMA_VERSION);
    let promises = store.promises().await?;
    assert_eq!(promises.len(), 1);
    assert_eq!(
        promises[0].state,
        vow_store::PromiseState::Completed {
            data: b"done".to_vec().into(),
            at: 6
        }
    );
    assert_eq!(promises[0].spec, vow_store::PromiseSpec::default());
    assert!(store.reactions().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn unusable_urls_are_clear_errors() -> anyhow::Result<()> {
    let error = PostgresStorage::connect("not a url", PostgresOptions::default())
        .await
        .err()
        .context("a malformed URL was accepted")?;
    assert!(
        matches!(&error, Error::Open { reason, .. } if reason.contains("invalid database URL")),
        "{error:?}"
    );
    // Nothing listens on port 1.
    let error =
        PostgresStorage::connect("postgres://vow@127.0.0.1:1/vow", PostgresOptions::default())
            .await
            .err()
            .context("a refused connection was accepted")?;
    let text = error.to_string();
    assert!(
        text.contains("cannot open the store at postgres://vow@127.0.0.1:1/vow"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reconnected_and_nothing_acknowledged_is_lost() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let store = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    let worker = vow_store::WorkerKey {
        component: uuid::Uuid::new_v4(),
        name: "survivor".to_owned(),
    };
    let append = |index: u64| vow_store::Write::AppendOplog {
        worker: worker.clone(),
        records: vec![vow_store::OplogRecord {
            index,
            at: index,
            entry: format!("entry {index}").into_bytes().into(),
        }],
    };
    store.write(vec![append(1)]).await?;

    // Cut every connection of the store, as a database restart would.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;

    // The first write may fail (it is not acknowledged then); the writer
    // reconnects and later ones succeed.
    let mut next = 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match store.write(vec![append(next)]).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(
                    matches!(e, Error::Backend(_) | Error::Closed),
                    "unexpected error {e:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => anyhow::bail!("the writer never reconnected: {e}"),
        }
    }
    next += 1;
    store.write(vec![append(next)]).await?;
    let indices: Vec<u64> = store
        .oplog(&worker, 1, 100)
        .await?
        .iter()
        .map(|r| r.index)
        .collect();
    assert_eq!(indices, (1..=next).collect::<Vec<_>>());
    Ok(())
}

/// A role that may not create tables cannot set a store up, and says why;
/// once the owner has, a role with rights on the tables only runs it, and a
/// role without them gets the server's "permission denied".
#[tokio::test]
async fn missing_rights_are_clear_errors() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (writer, reader) = (format!("vow_rw_{suffix}"), format!("vow_none_{suffix}"));
    for role in [&writer, &reader] {
        admin
            .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
            .await?;
    }
    admin
        .batch_execute(&format!(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC; REVOKE CREATE ON SCHEMA public FROM {writer}"
        ))
        .await?;
    let as_role = |role: &str| -> anyhow::Result<String> {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.user(role);
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => anyhow::bail!("a TCP host is needed in {url}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().context("no database in the URL")?;
        Ok(format!("postgres://{role}@{host}:{port}/{db}"))
    };

    let refused = PostgresStorage::connect(&as_role(&writer)?, PostgresOptions::default())
        .await
        .err()
        .context("a role without CREATE must not set up the store")?;
    let text = refused.to_string();
    assert!(
        text.contains("permission denied") && text.contains("may create tables"),
        "{text}"
    );

    drop(PostgresStorage::connect(&url, PostgresOptions::default()).await?);
    admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {writer}"
        ))
        .await?;
    let store = PostgresStorage::connect(&as_role(&writer)?, PostgresOptions::default()).await?;
    vow_store::conformance::promises(&store).await;

    let refused = PostgresStorage::connect(&as_role(&reader)?, PostgresOptions::default())
        .await
        .err()
        .context("a role without rights on the tables must be refused")?;
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );

    // Roles belong to the whole server: leave none behind.
    drop(store);
    for role in [&writer, &reader] {
        admin
            .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
            .await
            .ok();
    }
    Ok(())
}

/// One node per database: a second store waits for the first to let go,
/// then refuses and says who holds the database; once the first is gone
/// it opens. A node whose connection was cut while another took the
/// database over writes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_writes_to_a_database_and_a_replaced_one_is_fenced() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let patient = |seconds| PostgresOptions {
        connect_timeout: std::time::Duration::from_secs(seconds),
        ..PostgresOptions::default()
    };
    let first = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    let started = std::time::Instant::now();
    match PostgresStorage::connect(&url, patient(1)).await {
        Err(Error::Open { reason, .. }) => {
            assert!(
                reason.starts_with("another Vow node writes to this database: \"vow writer "),
                "{reason}"
            );
            assert!(
                reason.contains(&format!("pid {}", std::process::id())),
                "{reason}"
            );
            assert!(reason.contains("(server process "), "{reason}");
        }
        other => anyhow::bail!("a second node opened the database: {other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    drop(first);
    // The first writer's session ends as its task sees the store dropped.
    let second = PostgresStorage::connect(&url, patient(10)).await?;

    // Cut the second node's writer, and let a third take the database
    // before the second reconnects.
    vow_tests::cut_vow_writers(&url)?;
    let third = PostgresStorage::connect(&url, patient(10)).await?;
    let worker = vow_store::WorkerKey {
        component: uuid::Uuid::new_v4(),
        name: "fenced".to_owned(),
    };
    let append = |index: u64| vow_store::Write::AppendOplog {
        worker: worker.clone(),
        records: vec![vow_store::OplogRecord {
            index,
            at: index,
            entry: b"entry".to_vec().into(),
        }],
    };
    // The write that meets the cut connection fails as any would; the
    // next finds the database taken, and so does every one after it.
    let mut fenced = None;
    for _ in 0..3 {
        if let Err(Error::Fenced { holder, .. }) = second.write(vec![append(1)]).await {
            fenced = Some(holder);
            break;
        }
    }
    let holder = fenced.context("the replaced node was not fenced")?;
    assert!(holder.starts_with("\"vow writer "), "{holder}");
    // What a server waits on to stop: it says who took over.
    let taken = tokio::time::timeout(std::time::Duration::from_secs(5), second.taken_over())
        .await
        .context("taken_over did not resolve")?;
    assert_eq!(taken, holder);
    assert!(matches!(
        second.write(vec![append(2)]).await,
        Err(Error::Fenced { .. })
    ));
    assert!(second.oplog(&worker, 1, 10).await?.is_empty());
    // The node that holds the database writes.
    third.write(vec![append(1)]).await?;
    assert_eq!(third.oplog(&worker, 1, 10).await?.len(), 1);
    Ok(())
}
