//! The conformance suite against the in-memory backend.

use vow_store::MemoryStorage;
use vow_store::conformance;

#[tokio::test]
async fn memory_storage_conforms() {
    let store = MemoryStorage::new();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn checks_can_share_one_store_concurrently() {
    let store = MemoryStorage::new();
    futures::join!(conformance::run_all(&store), conformance::run_all(&store),);
}
