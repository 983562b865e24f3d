//! The `idemproxy` command: run the proxy, check a config, run the simulator or the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use idemproxy::tls::ca;
use idemproxy::{config, demo, proxy, sim, telemetry};

/// mimalloc instead of glibc's malloc: the request path makes many small short-lived
/// allocations, often freed on another worker thread than the one that made them; profiling
/// showed glibc's `_int_malloc`/`malloc_consolidate`/`free` at ≈ 21 % of the proxy's CPU under
/// load (docs/benchmarks.md). Built with `no_thp`: on a host with transparent huge pages set to
/// `always`, mimalloc's eagerly committed arenas are backed by 2 MiB pages and an idle proxy's
/// RSS grows from ≈ 10 to ≈ 18 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A proxy that makes Alibaba Cloud OpenAPI retries safe for tools that were never written
/// for it: ClientToken injection, re-signing, bounded and safe retries.
#[derive(Debug, Parser)]
#[command(name = "idemproxy", version, about)]
struct Cli {
    /// Run the proxy with this config file (same as `idemproxy run --config FILE`).
    #[arg(long, global = false)]
    config: Option<PathBuf>,
    /// Log format: text or json (overrides [log] format).
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// The config file.
        #[arg(long, default_value = "config/idemproxy.toml")]
        config: PathBuf,
    },
    /// Validate a config file and exit (0 if valid, 64 if not).
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Run the built-in gpdb API simulator.
    Simulate {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Keys it accepts: AK=SECRET[,AK=SECRET...].
        #[arg(long, default_value = "testid=testsecret")]
        keys: String,
        /// Faults, e.g. "CreateDBInstance=reset,503;random=0.1;seed=7" (see README).
        #[arg(long, default_value = "")]
        faults: String,
        /// Accepted Timestamp skew.
        #[arg(long, default_value = "15m")]
        window: humantime::Duration,
        /// Serve HTTPS with this certificate (PEM; with --tls-key).
        #[arg(long, requires = "tls_key", conflicts_with = "tls_from_ca")]
        tls_cert: Option<PathBuf>,
        /// The private key for --tls-cert (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve HTTPS with a leaf minted from the CA in this folder (ca.pem, ca-key.pem).
        #[arg(long)]
        tls_from_ca: Option<PathBuf>,
        /// Answer every request at once with a fixed success, checking nothing (a fast
        /// upstream for load benchmarks).
        #[arg(long = "static")]
        static_mode: bool,
        /// Names for the minted leaf (with --tls-from-ca). Repeatable.
        #[arg(long = "tls-host", default_value = "gpdb.aliyuncs.com")]
        tls_host: Vec<String>,
    },
    /// Run the offline demo: simulator + proxy + a faulty workload, and print what happened.
    Demo,
    /// Exit 0 if an admin endpoint answers 200 (for container HEALTHCHECKs).
    Healthcheck {
        /// The address of the admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// The path to probe.
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
    /// Manage the local CA used to intercept HTTPS (CONNECT) to API hosts.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a CA certificate and key (ca.pem, ca-key.pem with mode 0600).
    Init {
        /// Folder to write into.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
        /// DNS suffixes the CA may vouch for (X.509 Name Constraints). Repeatable.
        #[arg(long = "permit", default_value = "aliyuncs.com")]
        permit: Vec<String>,
    },
}

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idemproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_logs = cli.log_format.as_deref() == Some("json");
    if let Some(f) = cli
        .log_format
        .as_deref()
        .filter(|f| *f != "json" && *f != "text")
    {
        eprintln!("idemproxy: --log-format {f:?} is not \"text\" or \"json\"");
        return ExitCode::from(EX_USAGE);
    }
    let command = match (cli.command, cli.config) {
        (Some(c), None) => c,
        (None, Some(config)) => Command::Run { config },
        (None, None) => Command::Run {
            config: PathBuf::from("config/idemproxy.toml"),
        },
        (Some(_), Some(_)) => {
            eprintln!("idemproxy: give --config either alone or after `run`");
            return ExitCode::from(EX_USAGE);
        }
    };
    match command {
        Command::CheckConfig { file } => match config::load_file(&file) {
            Ok(c) => {
                let c = Arc::new(c);
                if let Err(e) = rt.block_on(async { proxy::prepare(c.clone()).map(|_| ()) }) {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::from(EX_USAGE);
                }
                println!(
                    "{}: ok ({} upstream(s), {} credential(s), listen {})",
                    file.display(),
                    c.upstreams.len(),
                    c.credentials.len(),
                    c.proxy.listen
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Run { config } => {
            let cfg = match config::load_file(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("idemproxy: {}: {e}", config.display());
                    return ExitCode::from(EX_USAGE);
                }
            };
            telemetry::init(&cfg.log.level, json_logs || cfg.log.json);
            report(rt.block_on(run_proxy(cfg, config)))
        }
        Command::Ca {
            command: CaCommand::Init { dir, force, permit },
        } => ca_init(&dir, force, &permit),
        Command::Simulate {
            listen,
            keys,
            faults,
            window,
            tls_cert,
            tls_key,
            tls_from_ca,
            tls_host,
            static_mode,
        } => {
            telemetry::init("info", json_logs);
            let parsed = sim::parse_keys(&keys)
                .map_err(|e| format!("--keys: {e}"))
                .and_then(|keys| {
                    Ok((
                        keys,
                        sim::FaultPlan::parse(&faults).map_err(|e| format!("--faults: {e}"))?,
                    ))
                })
                .and_then(|(k, f)| {
                    Ok((
                        k,
                        f,
                        sim_tls(tls_cert, tls_key, tls_from_ca, &tls_host)
                            .map_err(|e| format!("{e:#}"))?,
                    ))
                });
            match parsed {
                Ok((keys, faults, tls)) => {
                    let cfg = sim::SimConfig {
                        keys,
                        faults,
                        window: Duration::from(window),
                        tls,
                        static_mode,
                    };
                    report(rt.block_on(run_sim(listen, cfg)))
                }
                Err(e) => {
                    eprintln!("idemproxy simulate: {e}");
                    ExitCode::from(EX_USAGE)
                }
            }
        }
        Command::Healthcheck { admin, path } => {
            let probe = async {
                let req = http::Request::get(path.as_str())
                    .header(http::header::HOST, admin.to_string())
                    .body(http_body_util::Full::new(bytes::Bytes::new()))?;
                let reply = idemproxy::client::send(
                    idemproxy::client::Route::Direct(admin),
                    req,
                    Duration::from_secs(3),
                )
                .await?;
                anyhow::ensure!(
                    reply.status.is_success(),
                    "{} answered {}",
                    path,
                    reply.status
                );
                Ok(())
            };
            match rt.block_on(probe) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("idemproxy healthcheck: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo => {
            telemetry::init("warn", json_logs);
            match rt.block_on(demo::run()) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idemproxy demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn ca_init(dir: &std::path::Path, force: bool, permit: &[String]) -> ExitCode {
    match ca::init_dir(dir, force, permit) {
        Ok((cert, key)) => {
            println!("{}", trust_instructions(&cert, &key, permit));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("idemproxy ca init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn trust_instructions(cert: &std::path::Path, key: &std::path::Path, permit: &[String]) -> String {
    let c = cert.display();
    format!(
        "created {c}\ncreated {} (mode 0600: keep it secret; it never leaves this machine)\n\
         the CA may only vouch for: {}\n\n\
         Configure the proxy:\n  [tls]\n  ca_cert = \"{c}\"\n  ca_key = \"{}\"\n\n\
         Trust the CA in the client (pick what the client reads):\n\
         \x20 Debian/Ubuntu system store: cp {c} /usr/local/share/ca-certificates/idemproxy.crt && update-ca-certificates\n\
         \x20 RHEL/Fedora system store:   cp {c} /etc/pki/ca-trust/source/anchors/idemproxy.pem && update-ca-trust\n\
         \x20 OpenSSL-based tools:        export SSL_CERT_FILE={c}   (replaces the default bundle)\n\
         \x20 Python requests / certifi:  export REQUESTS_CA_BUNDLE={c}, or append it to $(python -m certifi)\n\
         \x20 Alibaba Cloud Python Tea SDK: Config(ca=\"{c}\") (SSL_CERT_FILE is ignored through a proxy)\n\
         \x20 Alibaba Cloud Python legacy SDK: AcsClient(..., verify=\"{c}\") or ALIBABA_CLOUD_CA_BUNDLE={c}\n\
         \x20 Node.js:                    export NODE_EXTRA_CA_CERTS={c}\n\
         \x20 Java:                       keytool -importcert -alias idemproxy -file {c} -cacerts -storepass changeit -noprompt\n\
         \x20 curl:                       curl --proxy-cacert is for the proxy itself; use --cacert {c}",
        key.display(),
        permit.join(", "),
        key.display(),
    )
}

fn sim_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    from_ca: Option<PathBuf>,
    hosts: &[String],
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if let (Some(cert), Some(key)) = (cert, key) {
        let cert_pem =
            std::fs::read(&cert).with_context(|| format!("--tls-cert {}", cert.display()))?;
        let key_pem =
            std::fs::read(&key).with_context(|| format!("--tls-key {}", key.display()))?;
        let certs =
            rustls_pemfile::certs(&mut cert_pem.as_slice()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())?
            .ok_or_else(|| anyhow::anyhow!("--tls-key holds no private key"))?;
        let first = certs
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("--tls-cert holds no certificate"))?;
        return Ok(Some(ca::server_config(first, key)?));
    }
    if let Some(dir) = from_ca {
        let ca = ca::LocalCa::load(&dir.join(ca::CA_CERT_FILE), &dir.join(ca::CA_KEY_FILE), 1)?;
        let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let (cert, key) = ca.mint_for(&names)?;
        return Ok(Some(ca::server_config(cert, key)?));
    }
    Ok(None)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idemproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_proxy(cfg: config::Config, path: PathBuf) -> anyhow::Result<()> {
    let handle = proxy::bind(Arc::new(cfg)).await?;
    let reloads = handle.serve_reloads(path);
    shutdown_signal().await;
    tracing::info!(
        "shutting down: no new connections; calls in flight may finish within proxy.shutdown_grace"
    );
    reloads.abort();
    handle.shutdown().await;
    Ok(())
}

async fn run_sim(listen: SocketAddr, cfg: sim::SimConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let handle = sim::start(cfg, listener)?;
    tracing::info!(addr = %handle.addr, "gpdb simulator listening; ledger at /_sim/ledger");
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
