//! Ctrl-C and SIGTERM, watched once for the whole command.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when a child process (the contained run) handles the signal and says so itself.
static DELEGATED: AtomicBool = AtomicBool::new(false);

/// The signal, as the exit code it calls for (130 / 143). Cloned freely; every clone sees
/// the one signal.
#[derive(Clone)]
pub struct Signals(tokio::sync::watch::Receiver<Option<u8>>);

impl Signals {
    pub fn install() -> Signals {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::spawn(async move {
            let (code, message) = tokio::select! {
                _ = tokio::signal::ctrl_c() => (130, "interrupted; stopping child processes"),
                _ = sigterm.recv() => (143, "terminated; stopping child processes"),
            };
            if !DELEGATED.load(Ordering::SeqCst) {
                eprintln!("{message}");
            }
            let _ = tx.send(Some(code));
        });
        Signals(rx)
    }

    /// Waits for the signal.
    pub async fn received(&self) -> u8 {
        let mut rx = self.0.clone();
        let code = *rx.wait_for(Option::is_some).await.expect("the signal task outlives the command");
        code.expect("waited for Some")
    }

    /// From now on a child process receives the signal and reports it; this one stays quiet.
    pub fn delegate(&self) {
        DELEGATED.store(true, Ordering::SeqCst);
    }

    pub fn code(&self) -> Option<u8> {
        *self.0.borrow()
    }
}
