//! The shutdown signal: SIGTERM or SIGINT (Ctrl-C). SIGHUP is logged and ignored.

/// Resolves on the first SIGTERM or SIGINT and returns its name.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut int), Ok(mut hup)) => loop {
                tokio::select! {
                    _ = term.recv() => return "SIGTERM",
                    _ = int.recv() => return "SIGINT",
                    // Configuration is read at start, so there is nothing to reload; say
                    // so instead of dying, which is what SIGHUP does by default.
                    _ = hup.recv() => tracing::info!("SIGHUP ignored: restart the agent to change its configuration"),
                }
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
