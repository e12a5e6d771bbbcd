//! Ctrl-C and SIGTERM, watched once for the whole command.

/// The signal, as the exit code it calls for (130 / 143). Cloned freely; every clone sees
/// the one signal.
#[derive(Clone)]
pub struct Signals(tokio::sync::watch::Receiver<Option<u8>>);

impl Signals {
    pub fn install() -> Signals {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::spawn(async move {
            let code = tokio::select! {
                _ = tokio::signal::ctrl_c() => { eprintln!("interrupted; stopping child processes"); 130 }
                _ = sigterm.recv() => { eprintln!("terminated; stopping child processes"); 143 }
            };
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

    pub fn code(&self) -> Option<u8> {
        *self.0.borrow()
    }
}
