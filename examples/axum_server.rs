//! An axum router served over rawtcp.
//!
//! ```text
//! cargo run --features axum --example axum_server -- 127.0.0.1:8080
//! curl http://127.0.0.1:8080/        # over RAWTCP_DATAPATH=raw or tun; over udp use http_client
//! ```
//!
//! Routes: `GET /` answers a short text, `GET /bytes/N` answers N bytes.

use axum::extract::Path;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let app = Router::new()
        .route("/", get(|| async { "hello from axum over rawtcp\n" }))
        .route(
            "/bytes/{n}",
            get(|Path(n): Path<usize>| async move { vec![b'x'; n.min(1 << 30)] }),
        );
    let listener = rawtcp::TcpListener::bind(&addr).await?;
    println!("axum over rawtcp listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
