//! Logs and traces of `vow serve`: JSON log lines with the invocation's
//! span, a `traceparent` that joins the caller's trace, and (with the
//! `otlp` feature) spans exported to a collector in this process.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::support::Server;

/// The caller's trace context the tests send.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// Queues `request-approval("deploy")` on worker `w1` over REST with a
/// `traceparent` header.
fn invoke_traced(server: &Server, cid: &str) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/components/{cid}/workers/w1/invoke?function=request-approval",
        server.url
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .header("traceparent", traceparent())
            .json(&json!({ "params_json": ["deploy"] }))
            .send()
            .await
            .map(|response| response.status())
    })?;
    if !status.is_success() {
        bail!("invoke answered {status}");
    }
    Ok(())
}

#[test]
fn json_logs_carry_the_invocation_and_host_call_spans() -> anyhow::Result<()> {
    let approval = vow_tests::guest("approval")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&approval], &["--log-format", "json", "-vv"])?;
    let cid = server.component_id("approval")?;
    server.client(&["worker", "start", &cid, "w1"])?.success()?;
    invoke_traced(&server, &cid)?;
    let promise = server.awaited_promise(&cid, "w1")?;

    let stderr = server.wait_stderr("worker suspended")?;
    // Every line is one JSON object; the server's own lines before logging
    // starts (the data directory) are not log records.
    let records: Vec<Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a log line is not JSON")?;
    let suspended = records
        .iter()
        .find(|r| r["fields"]["message"] == "worker suspended")
        .context("no `worker suspended` record")?;
    assert_eq!(suspended["level"], "DEBUG", "{suspended}");
    let spans = suspended["spans"].as_array().context("no span list")?;
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        ["invocation", "golem:api/host.await-promise"],
        "{suspended}"
    );
    let worker = format!("{cid}/w1");
    assert_eq!(spans[0]["worker"], worker.as_str(), "{suspended}");
    assert_eq!(spans[0]["function"], "request-approval", "{suspended}");
    assert_eq!(spans[0]["seq"], 1, "{suspended}");
    assert_eq!(spans[0]["trace_id"], TRACE_ID, "{suspended}");
    assert_eq!(spans[1]["worker"], worker.as_str(), "{suspended}");
    assert_eq!(spans[1]["promise"], promise.as_str(), "{suspended}");
    server.kill()
}

#[cfg(not(feature = "otlp"))]
#[test]
fn otlp_export_needs_the_feature() -> anyhow::Result<()> {
    let failed = crate::support::run(
        &[
            "serve",
            "--in-memory",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
        ],
        crate::support::QUICK,
    )?
    .code(1)?;
    assert!(
        failed.stderr.contains("built without OTLP export"),
        "{}",
        failed.stderr
    );
    Ok(())
}

#[cfg(feature = "otlp")]
mod otlp {
    //! An OTLP/HTTP collector in the test process, and what `vow serve
    //! --otlp-endpoint` sends it.

    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use anyhow::Context as _;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    use super::{PARENT_ID, TRACE_ID, invoke_traced};
    use crate::support::Server;

    /// Accepts `POST /v1/traces` with protobuf bodies and keeps what
    /// arrives.
    struct Collector {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    }

    impl Collector {
        fn start() -> anyhow::Result<Self> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let requests = Arc::new(Mutex::new(Vec::new()));
            let kept = Arc::clone(&requests);
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let kept = Arc::clone(&kept);
                    std::thread::spawn(move || serve(stream, &kept));
                }
            });
            Ok(Self { addr, requests })
        }

        /// Every span received so far, with its resource's `service.name`.
        fn spans(&self) -> Vec<(String, Span)> {
            let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
            let mut spans = Vec::new();
            for request in requests {
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .as_ref()
                        .and_then(|r| string(&r.attributes, "service.name"))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
                    }
                }
            }
            spans
        }
    }

    /// One connection: HTTP/1.1 requests one after the other, each
    /// answered 200 with an empty (valid) export response.
    fn serve(stream: TcpStream, kept: &Mutex<Vec<ExportTraceServiceRequest>>) {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        loop {
            let mut length = 0;
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                if head.is_empty() {
                    head = line.clone();
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(request) if head.starts_with("POST /v1/traces ") => {
                    if let Ok(mut kept) = kept.lock() {
                        kept.push(request);
                    }
                    "200 OK"
                }
                _ => "400 Bad Request",
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
            );
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .and_then(|value| match value {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn spans_join_the_callers_trace_at_the_collector() -> anyhow::Result<()> {
        let collector = Collector::start()?;
        let approval = vow_tests::guest("approval")?;
        let data = tempfile::tempdir()?;
        let endpoint = format!("http://{}", collector.addr);
        let server = Server::start_in(
            data.path(),
            &[&approval],
            &[
                "--otlp-endpoint",
                &endpoint,
                "--otlp-filter",
                "vow_runtime=debug,vow_server=info",
            ],
        )?;
        let cid = server.component_id("approval")?;
        server.client(&["worker", "start", &cid, "w1"])?.success()?;
        invoke_traced(&server, &cid)?;
        let promise = server.awaited_promise(&cid, "w1")?;
        server
            .client(&["promise", "complete", &promise, "--data", "yes"])?
            .success()?;
        server.wait_status(&cid, "w1", "idle")?;
        // A graceful stop exports what is still buffered.
        server.terminate()?;
        server.wait_exit(Duration::from_secs(60))?.success()?;

        let spans = collector.spans();
        let worker = format!("{cid}/w1");
        let (service, invocation) = spans
            .iter()
            .find(|(_, s)| {
                s.name == "invocation" && string(&s.attributes, "worker").as_ref() == Some(&worker)
            })
            .with_context(|| format!("no invocation span among {spans:#?}"))?;
        assert_eq!(service, "vow");
        assert_eq!(hex(&invocation.trace_id), TRACE_ID);
        assert_eq!(hex(&invocation.parent_span_id), PARENT_ID);
        assert_eq!(
            string(&invocation.attributes, "function").as_deref(),
            Some("request-approval")
        );
        // The host call is a child of the invocation, in the same trace.
        let (_, awaited) = spans
            .iter()
            .find(|(_, s)| s.name == "golem:api/host.await-promise")
            .with_context(|| format!("no await-promise span among {spans:#?}"))?;
        assert_eq!(awaited.trace_id, invocation.trace_id);
        assert_eq!(awaited.parent_span_id, invocation.span_id);
        assert_eq!(
            string(&awaited.attributes, "promise").as_deref(),
            Some(promise.as_str())
        );
        // So is the HTTP request that queued it.
        let request = spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| {
                s.name == "request"
                    && string(&s.attributes, "uri")
                        .is_some_and(|uri| uri.ends_with("function=request-approval"))
            })
            .with_context(|| format!("no span of the invoke request among {spans:#?}"))?;
        assert_eq!(hex(&request.trace_id), TRACE_ID);
        assert_eq!(hex(&request.parent_span_id), PARENT_ID);
        Ok(())
    }
}
