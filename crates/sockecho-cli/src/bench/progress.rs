//! The progress line on stderr while a bench runs: phase, throughput so far and time left. It
//! is shown only on a terminal, without `NO_COLOR` and without `-q`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sockecho::bench::Progress;

use crate::format::{bytes_si, group};

/// Whether a progress line belongs on stderr.
pub fn wanted(quiet: u8) -> bool {
    quiet == 0 && std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Draws the line from the run's samples until the task is aborted, then clears it.
pub async fn show(progress: Arc<Progress>) {
    // Length 1 until the schedule is known, so the bar starts empty rather than full.
    let bar = ProgressBar::new(1);
    // `wide_msg` is cut to the terminal's width, so the line never wraps.
    let style = ProgressStyle::with_template("{spinner} [{bar:20}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message("connecting");
    // The task is aborted when the run ends; dropping this then clears the line.
    let _clear = ClearOnDrop(bar.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last: Option<(Duration, u64, u64)> = None;
    loop {
        tick.tick().await;
        bar.tick();
        let Some(snap) = progress.snapshot() else {
            continue;
        };
        bar.set_length(snap.total.as_millis() as u64);
        bar.set_position(snap.elapsed.as_millis() as u64);
        let (rate, bytes_rate) = match last {
            Some((t, n, b)) if snap.elapsed > t => {
                let dt = (snap.elapsed - t).as_secs_f64();
                ((snap.replies - n) as f64 / dt, (snap.bytes - b) as f64 / dt)
            }
            _ => (0.0, 0.0),
        };
        last = Some((snap.elapsed, snap.replies, snap.bytes));
        let left = snap.total.saturating_sub(snap.elapsed).as_secs_f64();
        let phase = if snap.measuring {
            "measuring"
        } else {
            "warming up"
        };
        bar.set_message(format!(
            "{phase}: {} msg/s, {}/s in, {left:.1} s left",
            group(rate as u64),
            bytes_si(bytes_rate)
        ));
    }
}

/// Clears the progress line when the display task is aborted.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
