//! An HTTP/1.1 client on hyper 1.x over rawtcp: GETs a URL, prints the status and the byte
//! count, and optionally saves the body.
//!
//! ```text
//! cargo run --example http_client -- http://127.0.0.1:8080/bytes/1000000
//! cargo run --example http_client -- http://10.7.0.2:8000/big.bin -o /tmp/big.bin
//! cargo run --example http_client -- http://10.7.0.2:8000/big.bin -o - | sha256sum
//! ```
//!
//! With `-o -` the body goes to standard output and the status line to standard error.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::io::Write;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let url: hyper::Uri = args
        .next()
        .ok_or("usage: http_client URL [-o FILE]")?
        .parse()?;
    let mut output = None;
    while let Some(a) = args.next() {
        if a == "-o" {
            output = Some(args.next().ok_or("-o needs a file")?);
        }
    }
    if url.scheme_str() != Some("http") {
        return Err("only http:// URLs".into());
    }
    let host = url.host().ok_or("URL without host")?;
    let port = url.port_u16().unwrap_or(80);
    let host_for_connect = host.trim_start_matches('[').trim_end_matches(']');

    // The default stack starts before the clock does: the time is the download's, as
    // curl's `time_total` is.
    rawtcp::Stack::default_stack()?;
    let start = Instant::now();
    let stream = rawtcp::TcpStream::connect((host_for_connect, port)).await?;
    let connected = start.elapsed().as_secs_f64();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = url.authority().ok_or("URL without authority")?.clone();
    let req = Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())?;
    let mut resp = sender.send_request(req).await?;
    let status = resp.status();
    let to_stdout = output.as_deref() == Some("-");
    let mut file: Option<std::io::BufWriter<Box<dyn Write>>> = match &output {
        Some(_) if to_stdout => Some(std::io::BufWriter::with_capacity(
            1 << 20,
            Box::new(std::io::stdout().lock()),
        )),
        Some(path) => Some(std::io::BufWriter::new(Box::new(std::fs::File::create(
            path,
        )?))),
        None => None,
    };
    let mut total: u64 = 0;
    while let Some(frame) = resp.body_mut().frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
            if let Some(f) = file.as_mut() {
                f.write_all(&data)?;
            }
        }
    }
    if let Some(mut f) = file {
        f.flush()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "status {} bytes {} in {:.6} s ({:.1} MB/s), connected in {:.6} s",
        status.as_u16(),
        total,
        secs,
        total as f64 / secs / 1e6,
        connected
    );
    if to_stdout {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    if !status.is_success() {
        return Err(format!("HTTP status {status}").into());
    }
    Ok(())
}
