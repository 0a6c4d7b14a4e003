//! Graceful shutdown over a real socket.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{App, invoke_uri};

#[tokio::test]
async fn shutdown_gives_up_on_parked_requests_after_the_grace_period() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "parked").await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let grace = Duration::from_millis(300);
    let server = tokio::spawn(vow_server::serve_with_grace(
        listener,
        app.router.clone(),
        async {
            let _ = stopped.await;
        },
        grace,
    ));

    // A request that never finishes: nobody completes the promise.
    let client = reqwest::Client::new();
    let parked = tokio::spawn(
        client
            .post(format!(
                "{base}{}",
                invoke_uri(&cid, "parked", "create-and-await")
            ))
            .json(&json!({ "params": [] }))
            .send(),
    );
    app.awaited_promise(&cid, "parked").await?;

    let started = Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    let waited = started.elapsed();
    assert!(waited >= grace, "returned after {waited:?}");
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
    parked.abort();
    Ok(())
}

#[tokio::test]
async fn shutdown_is_prompt_when_nothing_is_in_flight() -> Result<()> {
    let app = App::new()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(vow_server::serve(listener, app.router, async {
        let _ = stopped.await;
    }));
    let listed = reqwest::get(format!("{base}/v1/components")).await?;
    assert_eq!(
        listed.json::<serde_json::Value>().await?,
        json!({ "components": [] })
    );
    let started = Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}
