//! An HTTP/1.1 server on hyper 1.x over rawtcp — or, with `--kernel`, the same application
//! over the kernel's TCP (`tokio::net::TcpListener`), so the two stacks can be compared with
//! nothing else different.
//!
//! ```text
//! cargo run --example http_server -- 127.0.0.1:8080
//! RAWTCP_DATAPATH=raw cargo run --example http_server -- 10.7.0.1:8080   # then: curl http://10.7.0.1:8080/
//! cargo run --example http_server -- --kernel 127.0.0.1:8081            # kernel TCP, same answers
//! cargo run --example http_server -- --cc bbr 127.0.0.1:8080            # choose congestion control
//! ```
//!
//! `--cc` sets the listening socket's congestion control, which its connections take: with
//! rawtcp through `TcpSocket::set_congestion`, with the kernel through `TCP_CONGESTION`.
//!
//! `GET /` answers a short text; `GET /bytes/N` answers N bytes of the pattern
//! `byte[i] = i % 251`, so a client can check every byte. `examples/wire_loss.rs` runs both
//! flavours side by side on a plain veth, `examples/wan_loss.rs` across an emulated WAN.

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

const USAGE: &str =
    "usage: http_server [--kernel] [--cc newreno|cubic|bbr] [ADDR]   (ADDR defaults to 127.0.0.1:8080)";

/// A response body: a short text, or N bytes of the `i % 251` pattern in 64 KiB chunks.
enum Answer {
    Text(Option<Bytes>),
    Pattern { next: u64, end: u64 },
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            Answer::Text(t) => t.take().map(Frame::data),
            Answer::Pattern { next, end } if *next < *end => {
                let n = (*end - *next).min(64 * 1024);
                let chunk: Vec<u8> = (*next..*next + n).map(|i| (i % 251) as u8).collect();
                *next += n;
                Some(Frame::data(Bytes::from(chunk)))
            }
            Answer::Pattern { .. } => None,
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Answer::Text(t) => t.is_none(),
            Answer::Pattern { next, end } => next >= end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Answer::Text(t) => SizeHint::with_exact(t.as_ref().map_or(0, |b| b.len() as u64)),
            Answer::Pattern { next, end } => SizeHint::with_exact(end.saturating_sub(*next)),
        }
    }
}

fn text(status: StatusCode, s: &'static str) -> Response<Answer> {
    let mut r = Response::new(Answer::Text(Some(Bytes::from_static(s.as_bytes()))));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Answer>, Infallible> {
    let path = req.uri().path();
    Ok(if path == "/" {
        text(StatusCode::OK, "hello from rawtcp\n")
    } else if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        Response::new(Answer::Pattern { next: 0, end: n })
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    })
}

/// Serves one connection, whichever TCP stack carries it.
fn serve<S>(stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(handle))
            .await;
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut kernel = false;
    let mut cc: Option<String> = None;
    let mut addr = "127.0.0.1:8080".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kernel" => kernel = true,
            "--cc" => cc = args.next(),
            s if s.starts_with('-') => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
            s => addr = s.to_string(),
        }
    }
    if kernel {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        if let Some(cc) = &cc {
            // TCP_CONGESTION on the listener; accepted connections inherit it.
            let name = if cc == "newreno" { "reno" } else { cc.as_str() };
            socket2::SockRef::from(&listener).set_tcp_congestion(name.as_bytes())?;
        }
        println!(
            "HTTP over the kernel's TCP listening on {}",
            listener.local_addr()?
        );
        loop {
            serve(listener.accept().await?.0);
        }
    }
    let listener = match &cc {
        None => rawtcp::TcpListener::bind(&addr).await?,
        Some(cc) => {
            let algorithm = cc.parse().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--cc: {e}"))
            })?;
            let at: std::net::SocketAddr = addr.parse().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
            })?;
            let socket = if at.is_ipv4() {
                rawtcp::TcpSocket::new_v4()?
            } else {
                rawtcp::TcpSocket::new_v6()?
            };
            socket.set_congestion(algorithm)?;
            socket.bind(at)?;
            socket.listen(1024)?
        }
    };
    println!("HTTP over rawtcp listening on {}", listener.local_addr()?);
    loop {
        serve(listener.accept().await?.0);
    }
}
