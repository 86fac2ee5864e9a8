//! systemd's readiness and watchdog protocol (sd_notify), for `Type=notify` units with
//! `WatchdogSec=`. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! READY is sent once the main loop has answered a first probe (the API socket and the
//! metrics listener were bound by tasks that ran before it); the watchdog is petted only
//! while the main loop keeps answering, so a wedged loop gets the unit restarted.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{mpsc, oneshot};

use crate::api::{Call, Request};

/// Whether the main loop answers a probe within `within`.
async fn main_loop_answers(calls: &mpsc::Sender<Request>, within: Duration) -> bool {
    let (reply, answer) = oneshot::channel();
    let probe = async {
        calls
            .send(Request {
                call: Call::Ping,
                reply,
            })
            .await
            .is_ok()
            && matches!(answer.await, Ok(Ok(_)))
    };
    tokio::time::timeout(within, probe).await.unwrap_or(false)
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Spawns the task that reports readiness and pets the watchdog.
pub fn spawn(calls: mpsc::Sender<Request>) {
    tokio::spawn(async move {
        if !main_loop_answers(&calls, Duration::from_secs(60)).await {
            return;
        }
        notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let mut usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return;
        }
        // Pet twice per period, as sd_watchdog_enabled(3) advises.
        let period = Duration::from_micros(usec / 2);
        tracing::info!(every = ?period, "systemd watchdog enabled");
        loop {
            tokio::time::sleep(period).await;
            if main_loop_answers(&calls, period).await {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::warn!("main loop did not answer the watchdog probe");
            }
        }
    });
}

/// Tells systemd rvsd is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}
