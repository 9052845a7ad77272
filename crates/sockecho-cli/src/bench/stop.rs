//! How `bench` answers SIGINT and SIGTERM: the first ends the run early so it still reports,
//! a second (or any once the run is over) exits at once with 130, as an impatient user expects.

use std::sync::Arc;
use std::time::Duration;

use sockecho::bench::Progress;

use crate::signals::Interrupts;

/// On the first signal, ends the measured period early; on a second, exits (130).
pub async fn stop_on_signal(progress: Arc<Progress>, timeout: Duration) {
    // Without handlers the signals keep their default action: the process ends.
    let Ok(mut signals) = Interrupts::new() else {
        return;
    };
    signals.next().await;
    eprintln!(
        "bench: stopping; waiting up to {} for the replies in flight (again to quit now)",
        humantime::format_duration(timeout)
    );
    progress.stop();
    signals.next().await;
    std::process::exit(130);
}

/// Exits at once (130) on SIGINT or SIGTERM.
pub async fn quit_on_signal() {
    let Ok(mut signals) = Interrupts::new() else {
        return;
    };
    signals.next().await;
    std::process::exit(130);
}
