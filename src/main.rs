//! The `idemproxy` command: run the proxy, check a config, run the simulator or the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use idemproxy::{config, demo, proxy, sim, telemetry};

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
    },
    /// Run the offline demo: simulator + proxy + a faulty workload, and print what happened.
    Demo,
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
            report(rt.block_on(run_proxy(cfg)))
        }
        Command::Simulate {
            listen,
            keys,
            faults,
            window,
        } => {
            telemetry::init("info", json_logs);
            let keys = match sim::parse_keys(&keys) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("idemproxy simulate: --keys: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let faults = match sim::FaultPlan::parse(&faults) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("idemproxy simulate: --faults: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let cfg = sim::SimConfig {
                keys,
                faults,
                window: Duration::from(window),
            };
            report(rt.block_on(run_sim(listen, cfg)))
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

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idemproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_proxy(cfg: config::Config) -> anyhow::Result<()> {
    let handle = proxy::bind(Arc::new(cfg)).await?;
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            handle.shutdown().await;
        }
    }
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
