//! Bad input never panics: property tests over every parser a client or an operator can feed
//! (a stand-in for coverage-guided fuzzing, which needs a nightly toolchain this project's
//! machines do not have), and garbage over real sockets to the proxy and the simulator.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use idemproxy::api::error_body::extract_code;
use idemproxy::api::params::Params;
use idemproxy::api::v3::Authorization;
use idemproxy::sim::FaultPlan;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{proxy_toml_with, start_proxy, start_sim};

/// Cases per parser property: 2,000 in CI; `IDEMPROXY_FUZZ_CASES=200000` for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("IDEMPROXY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn params_parser_never_panics(q in ".{0,200}", b in proptest::option::of(".{0,200}")) {
        let _ = Params::parse(Some(&q), b.as_deref());
    }

    #[test]
    fn params_parser_never_panics_on_escapes(q in "([A-Za-z%+=&]|%[0-9A-Fa-f]{0,2}){0,80}") {
        if let Ok(p) = Params::parse(Some(&q), None) {
            // Whatever parses re-encodes and parses to the same map.
            let again = Params::parse(Some(&p.encode(idemproxy::api::params::Place::Query)), None).unwrap();
            prop_assert_eq!(again, p);
        }
    }

    #[test]
    fn authorization_parser_never_panics(s in ".{0,200}") {
        let _ = Authorization::parse(&s);
        let _ = Authorization::parse(&format!("ACS3-HMAC-SHA256 {s}"));
    }

    #[test]
    fn fault_spec_parser_never_panics(s in ".{0,100}") {
        let _ = FaultPlan::parse(&s);
    }

    #[test]
    fn error_body_reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = extract_code(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000) / 7))]

    #[test]
    fn config_loader_never_panics(s in "(\\[[a-z.]{0,12}\\]\n|[a-z_]{1,12} = (\"[ -~]{0,12}\"|[0-9.-]{1,6}|\\[\\]|true)\n){0,8}") {
        let _ = idemproxy::config::load_str(&s, &HashMap::new(), Path::new("."));
    }
}

async fn send_garbage(addr: std::net::SocketAddr, bytes: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(addr).await {
        let _ = s.write_all(bytes).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut buf)).await;
    }
}

#[tokio::test]
async fn garbage_over_sockets_leaves_proxy_and_simulator_serving() {
    let sim = start_sim("").await;
    let proxy = start_proxy(&proxy_toml_with(sim.addr, "", "", "store = \"memory\"")).await;
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\xff\xfe".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"POST http://gpdb.aliyuncs.com/?Action=%zz HTTP/1.1\r\nhost: gpdb.aliyuncs.com\r\ncontent-length: 5\r\n\r\nab".to_vec(),
        b"POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n".to_vec(),
        b"CONNECT :::: HTTP/1.1\r\n\r\n".to_vec(),
        b"POST http://gpdb.aliyuncs.com/ HTTP/1.1\r\nhost: gpdb.aliyuncs.com\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x07\x00\x00\x00\x00\x00".to_vec(),
        b"POST http://gpdb.aliyuncs.com/?a=1 HTTP/1.1\r\nhost: gpdb.aliyuncs.com\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 4\r\n\r\n\xff\xfe\xfd\xfc".to_vec(),
        b"POST http://gpdb.aliyuncs.com/ HTTP/1.1\r\nhost: gpdb.aliyuncs.com\r\nauthorization: ACS3-HMAC-SHA256 ,,,===\r\n\r\n".to_vec(),
    ];
    for input in &inputs {
        send_garbage(proxy.addr, input).await;
        send_garbage(sim.addr, input).await;
    }
    // Both still serve.
    let r = idemproxy::client::send_v1(
        idemproxy::client::Route::Proxy(proxy.addr),
        crate::support::HOST,
        &crate::support::signer(),
        &crate::support::create("after garbage"),
        idemproxy::api::rpc_client::Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}
