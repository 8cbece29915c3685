//! An HTTP/1.1 server on hyper 1.x over rawtcp.
//!
//! ```text
//! cargo run --example http_server -- 127.0.0.1:8080
//! RAWTCP_DATAPATH=raw cargo run --example http_server -- 10.7.0.1:8080   # then: curl http://10.7.0.1:8080/
//! ```
//!
//! `GET /` answers a short text; `GET /bytes/N` answers N bytes of the pattern
//! `byte[i] = i % 251`, so a client can check every byte.

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = rawtcp::TcpListener::bind(&addr).await?;
    println!("HTTP over rawtcp listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
