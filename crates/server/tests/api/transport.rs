//! The connection layer on a real socket: HTTPS, the header and body
//! deadlines, and the connection cap.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use vow_server::{ServeOptions, ServerConfig};

use crate::support::executor;

/// A server on a free port; dropping it stops the server.
struct Running {
    addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(config: ServerConfig, options: ServeOptions) -> Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = vow_server::router(executor()?, config);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(vow_server::serve_with(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        options,
    ));
    Ok(Running { addr, _stop: stop })
}

/// Reads until the peer closes the connection or `limit` passes; what was
/// read, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (bytes, true),
            Ok(Ok(n)) => bytes.extend_from_slice(&buffer[..n]),
            Err(_) => return (bytes, false),
        }
    }
}

const LIST: &[u8] = b"GET /v1/components HTTP/1.1\r\nHost: vow\r\n\r\n";

/// Reads one response to `LIST` (its body is `{"components":[]}`).
async fn read_listing(stream: &mut TcpStream) -> Result<String> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    while !bytes.ends_with(b"{\"components\":[]}") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .context("no answer")??;
        ensure!(n > 0, "closed after {:?}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&buffer[..n]);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn https_with_a_certificate_made_here() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let options = ServeOptions {
        tls: Some(vow_server::tls_config(&cert, &key)?),
        ..ServeOptions::default()
    };
    let server = start(ServerConfig::default(), options).await?;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes())?)
        .build()?;
    let url = format!("https://localhost:{}/v1/components", server.addr.port());
    let reply = client.get(&url).send().await?;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json::<Value>().await?, json!({ "components": [] }));

    // A client that does not trust the certificate is refused by its own
    // TLS; plain HTTP on the TLS port gets no HTTP answer.
    let untrusting = reqwest::Client::new();
    assert!(untrusting.get(&url).send().await.is_err());
    let mut plain = TcpStream::connect(server.addr).await?;
    plain.write_all(LIST).await?;
    let (answer, closed) = read_until_closed(&mut plain, Duration::from_secs(10)).await;
    assert!(closed, "the server kept a plain HTTP connection open");
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn tls_files_that_cannot_be_used_are_refused_with_the_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let wrong_key = dir.path().join("other.pem");
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    std::fs::write(&wrong_key, other.signing_key.serialize_pem())?;

    let missing = vow_server::tls_config(&dir.path().join("nope.pem"), &key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(missing.contains("nope.pem"), "{missing}");
    let swapped = vow_server::tls_config(&key, &cert)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        swapped.contains("key.pem: holds no certificate"),
        "{swapped}"
    );
    let mismatched = vow_server::tls_config(&cert, &wrong_key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        mismatched.starts_with("the certificate and key cannot be used"),
        "{mismatched}"
    );
    Ok(())
}

#[tokio::test]
async fn clients_that_send_nothing_or_stall_are_disconnected() -> Result<()> {
    let options = ServeOptions {
        header_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = start(ServerConfig::default(), options).await?;

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(server.addr).await?;
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(closed, "a silent connection stayed open");

    // Sends half a request head, then stalls.
    let mut slow = TcpStream::connect(server.addr).await?;
    slow.write_all(b"GET /v1/components HTTP/1.1\r\nHost: v")
        .await?;
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a stalled request head kept its connection");

    // Kept alive after a request, then idle.
    let mut idle = TcpStream::connect(server.addr).await?;
    idle.write_all(LIST).await?;
    let answer = read_listing(&mut idle).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(closed, "an idle kept-alive connection stayed open");
    Ok(())
}

#[tokio::test]
async fn a_stalled_body_is_answered_408() -> Result<()> {
    let config = ServerConfig {
        body_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = start(config, ServeOptions::default()).await?;
    let mut stream = TcpStream::connect(server.addr).await?;
    stream
        .write_all(
            b"POST /v1/components/00000000-0000-0000-0000-000000000001/workers HTTP/1.1\r\n\
              Host: vow\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
        )
        .await?;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.ends_with(
            "{\"error\":\"the request body stalled: no data arrived within the body timeout\"}"
        ),
        "{answer}"
    );
    Ok(())
}

#[tokio::test]
async fn past_the_connection_cap_new_clients_wait_their_turn() -> Result<()> {
    let options = ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    };
    let server = start(ServerConfig::default(), options).await?;
    let mut first = TcpStream::connect(server.addr).await?;
    first.write_all(LIST).await?;
    read_listing(&mut first).await?;

    // The kernel accepts the second connection; the server does not serve
    // it while the first is open.
    let mut second = TcpStream::connect(server.addr).await?;
    second.write_all(LIST).await?;
    let mut buffer = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buffer)).await;
    assert!(early.is_err(), "the second connection was served at once");

    drop(first);
    let answer = read_listing(&mut second).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(())
}
