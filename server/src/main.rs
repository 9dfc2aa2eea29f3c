//! `chat-server`: runs the bevy chat server. Every flag is also an environment variable
//! (`chat-server --help`).

use clap::Parser;
use server::config::{Command, Config, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if let Some(Command::Backup { file }) = &config.command {
        return backup(&config.engine.database, file);
    }
    // Connections need a file descriptor each: use what the hard limit allows.
    server::accept::raise_open_file_limit();
    let server = match server::Server::bind(config).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.run(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `chat-server backup FILE`: a consistent copy of the live database.
fn backup(database: &std::path::Path, to: &std::path::Path) -> std::process::ExitCode {
    match server::engine::sqlite::backup(database, to) {
        Ok(bytes) => {
            tracing::info!(from = %database.display(), to = %to.display(), bytes, "backup done");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(from = %database.display(), %error, "backup failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
