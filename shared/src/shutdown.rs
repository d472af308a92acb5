//! Process signals that ask a service to stop.

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
///
/// Errors only when the signal handlers cannot be installed, which happens at start-up or not
/// at all.
pub async fn terminate_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Cancels `token` on the first SIGTERM or SIGINT, from a background task.
pub fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        match terminate_signal().await {
            Ok(signal) => tracing::info!(signal, "stop requested"),
            Err(error) => tracing::error!(%error, "cannot listen for stop signals; stopping"),
        }
        token.cancel();
    });
}
