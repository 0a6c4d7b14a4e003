//! The versioned schema.
//!
//! The version is the one row of `vow_schema`. Migrations are the list
//! [`MIGRATIONS`]: entry `i` brings a store from version `i` to `i + 1`; they
//! run in one transaction under a transaction-scoped advisory lock, so
//! several processes starting at once migrate one after another, and a
//! crash never leaves a half-migrated store. Released entries never change.

use tokio_postgres::Client;
use vow_store::{Error, Result};

use crate::error::at_open;

/// The migrations, oldest first.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this build writes and understands.
pub(crate) const LATEST: u32 = MIGRATIONS.len() as u32;

/// The advisory lock migrations take ("Vow!" in ASCII).
const MIGRATION_LOCK: i64 = 0x566F_7721;

/// Version 1: the same records as the SQLite backend's schema 2. Indices
/// and times are `bigint` (Vow's u64 values stay below 2^63); a worker's
/// environment is a flat `text[]` of keys and values.
const V1: &str = "
CREATE TABLE components (
    id         uuid    NOT NULL PRIMARY KEY,
    name       text    NOT NULL,
    sha256     text    NOT NULL,
    bytes      bytea   NOT NULL,
    created_at bigint  NOT NULL
);

CREATE TABLE workers (
    component          uuid    NOT NULL,
    name               text    NOT NULL,
    args               text[]  NOT NULL,
    env                text[]  NOT NULL,
    created_at         bigint  NOT NULL,
    status             text    NOT NULL,
    last_error         text,
    awaiting_component uuid,
    awaiting_name      text,
    awaiting_index     bigint,
    PRIMARY KEY (component, name)
);

CREATE TABLE oplog (
    component uuid   NOT NULL,
    name      text   NOT NULL,
    idx       bigint NOT NULL,
    at        bigint NOT NULL,
    entry     bytea  NOT NULL,
    PRIMARY KEY (component, name, idx)
);

CREATE TABLE promises (
    component    uuid   NOT NULL,
    name         text   NOT NULL,
    idx          bigint NOT NULL,
    created_at   bigint NOT NULL,
    data         bytea,
    completed_at bigint,
    PRIMARY KEY (component, name, idx),
    CHECK ((data IS NULL) = (completed_at IS NULL))
);

CREATE TABLE invocations (
    component       uuid   NOT NULL,
    name            text   NOT NULL,
    seq             bigint NOT NULL,
    idempotency_key text,
    request         bytea  NOT NULL,
    state           text   NOT NULL CHECK (state IN ('queued', 'running', 'finished')),
    result          bytea,
    accepted_at     bigint NOT NULL,
    PRIMARY KEY (component, name, seq),
    CHECK ((result IS NOT NULL) = (state = 'finished'))
);

CREATE UNIQUE INDEX invocations_by_key
    ON invocations (component, name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX invocations_unfinished
    ON invocations (component, name, seq)
    WHERE state <> 'finished';

CREATE TABLE snapshots (
    component uuid   NOT NULL,
    name      text   NOT NULL,
    idx       bigint NOT NULL,
    at        bigint NOT NULL,
    data      bytea  NOT NULL,
    PRIMARY KEY (component, name)
);
";

/// Version 2 (SQLite's 3): rejection, timeouts, retention and options of
/// promises, and the reactions (continuations, all / any) that settle them.
const V2: &str = "
-- rejected: the promise was rejected and data holds the error.
ALTER TABLE promises ADD COLUMN rejected  boolean NOT NULL DEFAULT false;
ALTER TABLE promises ADD COLUMN deadline  bigint;
ALTER TABLE promises ADD COLUMN retention bigint;
ALTER TABLE promises ADD COLUMN options   bytea;

-- One per promise it settles; sources: see vow_store::encode_promise_keys.
CREATE TABLE reactions (
    component  uuid   NOT NULL,
    name       text   NOT NULL,
    idx        bigint NOT NULL,
    sources    bytea  NOT NULL,
    spec       bytea  NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (component, name, idx)
);
";

/// Version 3: several nodes on one database (`crate::cluster`): who is
/// in the cluster, and the lease of the node that ran the workers (one
/// node at a time; version 4 drops it for owners per worker).
const V3: &str = "
-- Epochs: a new one each time a node joins and each time a node takes
-- the lease, so that no two runs ever share one.
CREATE SEQUENCE vow_epochs;

-- One row per node id: the run that joined last, its address, until
-- when it counts as alive, and the load it reported.
CREATE TABLE vow_nodes (
    node_id       text        PRIMARY KEY,
    epoch         bigint      NOT NULL,
    advertise_url text        NOT NULL,
    started_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    workers       bigint,
    resident      bigint,
    running       bigint
);

-- One row: the active node's lease. Every write of the active
-- node checks it (epoch and expiry) in its own transaction.
CREATE TABLE vow_lease (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    node_id     text        NOT NULL,
    epoch       bigint      NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
-- Held by nobody until a node takes it.
INSERT INTO vow_lease VALUES (1, '', 0, now(), '-infinity');
";

/// Version 4: workers spread over the nodes of a cluster. Each worker has
/// an owner (a node, under the epoch of that node's run); the writer of a
/// cluster node names itself in its session (`vow.node`, "id epoch"), and
/// triggers then record it as the owner of the workers it creates and tell
/// the other nodes (`NOTIFY vow_changes`) what it changed, so that each
/// keeps its copy of the promises and the worker directory current.
/// Outside a cluster `vow.node` is unset and the triggers do nothing.
const V4: &str = r"
-- Which node runs each worker, under which run (epoch) of that node.
-- A worker whose owner's run is over (expired, or replaced by a newer
-- run of the same node id) or that has no row is free: the first node
-- that needs it takes it.
CREATE TABLE vow_owners (
    component uuid   NOT NULL,
    name      text   NOT NULL,
    node_id   text   NOT NULL,
    epoch     bigint NOT NULL,
    PRIMARY KEY (component, name)
);
CREATE INDEX vow_owners_by_node ON vow_owners (node_id, epoch);

-- 'origin kind component index name', tab-separated: origin is the
-- writer's vow.node, kind c (component), w (worker), p (promise) or r
-- (reaction); the name is last, since it may hold any character.
CREATE FUNCTION vow_notify(kind text, component uuid, idx bigint, name text)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('vow_changes', concat_ws(E'\t',
        current_setting('vow.node', true), kind, component::text, idx::text, name))
$$;

CREATE FUNCTION vow_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM vow_notify(TG_ARGV[0], OLD.component, OLD.idx, OLD.name);
    ELSE
        PERFORM vow_notify(TG_ARGV[0], NEW.component, NEW.idx, NEW.name);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION vow_worker_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM vow_owners WHERE component = OLD.component AND name = OLD.name;
        PERFORM vow_notify('w', OLD.component, 0, OLD.name);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO vow_owners (component, name, node_id, epoch)
        VALUES (NEW.component, NEW.name,
                split_part(current_setting('vow.node'), ' ', 1),
                split_part(current_setting('vow.node'), ' ', 2)::bigint)
        ON CONFLICT (component, name) DO UPDATE
            SET node_id = excluded.node_id, epoch = excluded.epoch;
    END IF;
    PERFORM vow_notify('w', NEW.component, 0, NEW.name);
    RETURN NULL;
END $$;

CREATE FUNCTION vow_component_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vow_notify('c', NEW.id, 0, '');
    RETURN NULL;
END $$;

CREATE TRIGGER vow_promises_changed AFTER INSERT OR UPDATE OR DELETE ON promises
    FOR EACH ROW WHEN (current_setting('vow.node', true) <> '')
    EXECUTE FUNCTION vow_key_changed('p');
CREATE TRIGGER vow_reactions_changed AFTER INSERT OR UPDATE OR DELETE ON reactions
    FOR EACH ROW WHEN (current_setting('vow.node', true) <> '')
    EXECUTE FUNCTION vow_key_changed('r');
CREATE TRIGGER vow_workers_changed AFTER INSERT OR UPDATE OR DELETE ON workers
    FOR EACH ROW WHEN (current_setting('vow.node', true) <> '')
    EXECUTE FUNCTION vow_worker_changed();
CREATE TRIGGER vow_components_changed AFTER INSERT ON components
    FOR EACH ROW WHEN (current_setting('vow.node', true) <> '')
    EXECUTE FUNCTION vow_component_changed();

-- One lease for the whole store is gone: every node runs the workers it
-- owns, and its writes are fenced by its own row in vow_nodes.
DROP TABLE vow_lease;
";

/// Brings the schema to [`LATEST`], or refuses a newer one.
pub(crate) async fn migrate(client: &mut Client, location: &str) -> Result<()> {
    let fail = |e: tokio_postgres::Error| at_open(location, &e);
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    // Created only when missing: a role with rights on the tables but not
    // to create tables can open a store that is already migrated.
    let exists: bool = tx
        .query_one("SELECT to_regclass('vow_schema') IS NOT NULL", &[])
        .await
        .map_err(fail)?
        .get(0);
    if !exists {
        tx.batch_execute("CREATE TABLE vow_schema (version integer NOT NULL)")
            .await
            .map_err(|e| Error::Open {
                location: location.to_owned(),
                reason: format!(
                    "creating Vow's tables: {} (the first start needs a role that may create tables in the database's schema, for example its owner)",
                    crate::error::message(&e)
                ),
            })?;
    }
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM vow_schema", &[])
        .await
        .map_err(fail)?
        .map(|row| row.get(0));
    let found = match found {
        Some(v) => u32::try_from(v).map_err(|_| Error::Corrupt {
            location: location.to_owned(),
            reason: format!("invalid schema version {v}"),
        })?,
        None => {
            tx.execute("INSERT INTO vow_schema (version) VALUES (0)", &[])
                .await
                .map_err(fail)?;
            0
        }
    };
    if found > LATEST {
        return Err(Error::NewerSchema {
            location: location.to_owned(),
            found,
            supported: LATEST,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(store = %location, from = version, to = version + 1, "migrating the store's schema");
        tx.batch_execute(sql).await.map_err(|e| Error::Open {
            location: location.to_owned(),
            reason: format!(
                "migrating the schema to version {}: {}",
                version + 1,
                crate::error::message(&e)
            ),
        })?;
    }
    if found < LATEST {
        tx.execute("UPDATE vow_schema SET version = $1", &[&(LATEST as i32)])
            .await
            .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}
