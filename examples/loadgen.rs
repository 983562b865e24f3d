//! A small load generator for `bench/load.sh`: keep-alive HTTP/1.1 connections sending signed
//! gpdb calls (V1, a fresh nonce and distinct parameters per request, as real re-sends would
//! not be) straight to a server, through a forward proxy, or through CONNECT + TLS.
//!
//! cargo run --release --example loadgen -- --target 127.0.0.1:8080 --mode forward \
//!     --connections 32 --duration 10 [--rate 5000] [--kind create|describe] [--ca certs/ca.pem]
//!
//! Prints one JSON object: requests, errors, rps, p50_us, p99_us, statuses.

// A benchmark tool: bad options and setup failures abort it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Opts {
    target: SocketAddr,
    mode: String,
    host: String,
    kind: String,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    ca: Option<String>,
    hold: Duration,
}

fn opts() -> Opts {
    let mut o = Opts {
        target: "127.0.0.1:8080".parse().unwrap(),
        mode: "forward".into(),
        host: "gpdb.aliyuncs.com".into(),
        kind: "create".into(),
        connections: 32,
        duration: Duration::from_secs(10),
        rate: None,
        ca: None,
        hold: Duration::ZERO,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let v = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--target" => o.target = v.parse().expect("--target ADDR"),
            "--mode" => o.mode = v,
            "--host" => o.host = v,
            "--kind" => o.kind = v,
            "--connections" => o.connections = v.parse().expect("--connections N"),
            "--duration" => {
                o.duration = Duration::from_secs_f64(v.parse().expect("--duration SECONDS"))
            }
            "--rate" => o.rate = Some(v.parse().expect("--rate PER_SECOND")),
            "--ca" => o.ca = Some(v),
            "--hold" => o.hold = Duration::from_secs_f64(v.parse().expect("--hold SECONDS")),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(o: &Opts) -> Sender {
    let mut tcp = TcpStream::connect(o.target).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    if o.mode == "connect" {
        tcp.write_all(
            format!("CONNECT {0}:443 HTTP/1.1\r\nhost: {0}:443\r\n\r\n", o.host).as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(o.ca.as_ref().expect("--ca for --mode connect")).unwrap();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(o.host.clone()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        return sender;
    }
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn request(o: &Opts, worker: usize, n: u64) -> Request<Full<Bytes>> {
    let desc = format!("load-{worker}-{n}");
    let call = match o.kind.as_str() {
        "describe" => V1Call::gpdb(
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou"), ("PageNumber", &n.to_string())],
        ),
        _ => V1Call::gpdb(
            "CreateDBInstance",
            &[
                ("RegionId", "cn-hangzhou"),
                ("EngineVersion", "6.0"),
                ("DBInstanceDescription", &desc),
            ],
        ),
    };
    let nonce = format!("{worker:04}-{n:012}-{}", std::process::id());
    let s = call.sign(
        "testid",
        &Secret::new("testsecret".into()),
        "POST",
        Placement::Query,
        SystemTime::now(),
        &nonce,
    );
    let uri = match o.mode.as_str() {
        "forward" => format!("http://{}/?{}", o.host, s.query),
        _ => format!("/?{}", s.query),
    };
    Request::post(uri)
        .header("host", o.host.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

struct Stats {
    latencies: Vec<u32>,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
}

async fn worker(o: Opts, id: usize, start: Instant) -> Stats {
    let mut st = Stats {
        latencies: Vec::with_capacity(100_000),
        errors: 0,
        statuses: BTreeMap::new(),
    };
    let mut sender = connect(&o).await;
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(o.connections as f64 / r));
    let mut n = 0u64;
    loop {
        let due = match interval {
            // Each connection's schedule is offset by its share of the interval, so that the
            // connections' requests interleave instead of arriving as bursts of `connections`.
            Some(i) => start + i.mul_f64(n as f64 + id as f64 / o.connections as f64),
            None => Instant::now(),
        };
        if due >= start + o.duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let req = request(&o, id, n);
        n += 1;
        if sender.ready().await.is_err() {
            st.errors += 1;
            sender = connect(&o).await;
            continue;
        }
        let t = Instant::now();
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                st.latencies
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *st.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                st.errors += 1;
                sender = connect(&o).await;
            }
        }
        if o.hold > Duration::ZERO {
            // One request, then keep the connection open (idle keep-alive) for the RSS probe.
            tokio::time::sleep(o.hold).await;
            break;
        }
    }
    st
}

#[tokio::main]
async fn main() {
    let o = opts();
    let start = Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = (0..o.connections)
        .map(|i| tokio::spawn(worker(o.clone(), i, start)))
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut statuses) = (0u64, BTreeMap::<u16, u64>::new());
    for t in tasks {
        let s = t.await.unwrap();
        all.extend(s.latencies);
        errors += s.errors;
        for (k, v) in s.statuses {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = start
        .elapsed()
        .as_secs_f64()
        .min(o.duration.as_secs_f64())
        .max(1e-9);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let statuses: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "requests": all.len(),
            "errors": errors,
            "rps": (all.len() as f64 / elapsed).round(),
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "statuses": statuses,
        })
    );
}
