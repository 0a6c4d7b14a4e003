//! The two HTTP clients the benchmark drives the server with.
//!
//! `Raw` is a minimal HTTP/1.1 keep-alive connection: it writes a request
//! and reads one `Content-Length` response, nothing else, like a lean load
//! generator. Client and server share this machine's cores, so a light
//! client leaves more of them to the server. `Reqwest` is what a typical
//! Rust client pays; its rows show the difference.

use anyhow::{Context as _, Result, bail, ensure};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Which client a measurement uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Reqwest,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Raw => "minimal HTTP/1.1 client",
            Self::Reqwest => "reqwest client",
        }
    }
}

/// One client connection (raw) or a handle on a pooled client (reqwest).
pub enum Conn {
    Raw(RawConn),
    Reqwest(reqwest::Client, String),
}

impl Conn {
    /// A new connection of this kind to `addr`; reqwest handles share `pool`.
    pub async fn open(kind: Kind, addr: &str, pool: &reqwest::Client) -> Result<Self> {
        Ok(match kind {
            Kind::Raw => Self::Raw(RawConn::connect(addr).await?),
            Kind::Reqwest => Self::Reqwest(pool.clone(), format!("http://{addr}")),
        })
    }

    /// POSTs a JSON body; the status and the response body.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        match self {
            Self::Raw(conn) => conn.post(path, body).await,
            Self::Reqwest(client, base) => {
                let response = client
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await?;
                let status = response.status().as_u16();
                Ok((status, response.bytes().await?.to_vec()))
            }
        }
    }
}

/// A keep-alive HTTP/1.1 connection, one request at a time.
pub struct RawConn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_owned(),
            buf: Vec::with_capacity(1024),
        })
    }

    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.stream.write_all(&request).await?;
        self.response().await
    }

    /// Reads one response with a `content-length` body.
    async fn response(&mut self) -> Result<(u16, Vec<u8>)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                let status: u16 = head.get(9..12).context("short status line")?.parse()?;
                let length: usize = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .context("no content-length")?
                    .1
                    .trim()
                    .parse()?;
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return Ok((status, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        ensure!(self.buf.len() < 1 << 20, "response too large");
        Ok(())
    }
}
