//! `probemesh`: parse the command line, then run the agent or a client command.

use probemesh::cli::{self, Command};
use probemesh::{advertise, app::App, config, logging, shutdown, version};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: see docs/decisions.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::parse(config::agent_flags());
    probemesh::install_crypto_provider();
    match cli.command {
        Command::Agent(args) => run_agent(&args),
        Command::Workers { client, command } => probemesh::client::run(client, command),
        Command::Members { client } => probemesh::client::run_members(client),
        Command::Tls { command } => probemesh::tls_commands::run(command),
        Command::Check(args) => probemesh::client::check::run(&args),
        Command::Version => {
            println!(
                "probemesh {} (revision {}, protocol {})",
                version::VERSION,
                version::GIT_REVISION,
                version::protocol_version()
            );
            ExitCode::SUCCESS
        }
    }
}

fn run_agent(args: &cli::AgentArgs) -> ExitCode {
    let sources = config::Sources {
        flags: &args.values,
        config_file: args.config.as_deref(),
        env: &|k| std::env::var(k).ok(),
    };
    // Load and check (reading only the file), then derive what needs the network; both
    // before anything is opened or bound, both exit 2 on a problem.
    let loaded =
        config::load(&sources).and_then(|c| advertise::resolve(&c.cluster).map(|addr| (c, addr)));
    let (config, advertise) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        tracing::info!(node_id = %config.node_id, version = version::VERSION, "probemesh agent starting");
        let app = App::build(config, advertise).await?;
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            let sig = shutdown::signal().await;
            tracing::info!(signal = sig, "shutting down");
            stop.cancel();
        });
        app.run(token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
