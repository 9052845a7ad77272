//! What a child process has written so far — a server's stderr, a terminal's screen — collected
//! by a reader thread, with a bounded wait for it to show something.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::WAIT;

/// The text so far, and whether the writer has closed its end.
#[derive(Default)]
struct State {
    text: String,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// Output of a child, collected on a thread as it arrives.
pub struct Transcript {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl Transcript {
    /// Collects `source` a whole line at a time, so a wait never sees half a log line.
    pub fn lines(source: impl Read + Send + 'static) -> Transcript {
        let mut source = BufReader::new(source);
        Transcript::collect(move |buf| source.read_until(b'\n', buf).unwrap_or(0))
    }

    /// Collects `source` as it arrives, handing each piece to `seen` first (a terminal shows
    /// prompts without a newline).
    pub fn chunks(
        mut source: impl Read + Send + 'static,
        mut seen: impl FnMut(&str) + Send + 'static,
    ) -> Transcript {
        let mut chunk = [0u8; 4096];
        Transcript::collect(move |buf| {
            // A pty's end reads as an EIO error, which is as good as EOF here.
            let n = source.read(&mut chunk).unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            seen(&String::from_utf8_lossy(&chunk[..n]));
            n
        })
    }

    /// Runs `next` on a thread until it returns 0, appending what it puts in its buffer.
    fn collect(mut next: impl FnMut(&mut Vec<u8>) -> usize + Send + 'static) -> Transcript {
        let shared = Arc::new(Shared::default());
        let sink = shared.clone();
        let reader = std::thread::spawn(move || {
            let mut piece = Vec::new();
            loop {
                piece.clear();
                let n = next(&mut piece);
                let mut state = sink.state.lock().expect("transcript lock");
                if n == 0 {
                    state.closed = true;
                    sink.changed.notify_all();
                    return;
                }
                state.text.push_str(&String::from_utf8_lossy(&piece));
                sink.changed.notify_all();
            }
        });
        Transcript {
            shared,
            reader: Some(reader),
        }
    }

    /// Everything collected so far.
    pub fn text(&self) -> String {
        self.shared
            .state
            .lock()
            .expect("transcript lock")
            .text
            .clone()
    }

    /// Waits until `ready(text)` holds, failing the test with the text after [`WAIT`] or if the
    /// writer closes its end first.
    pub fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut state = self.shared.state.lock().expect("transcript lock");
        loop {
            if ready(&state.text) {
                return state.text.clone();
            }
            let now = Instant::now();
            assert!(
                !state.closed && now < deadline,
                "waited for {what}; the process {}; its output so far:\n{}",
                if state.closed {
                    "closed it"
                } else {
                    "timed out"
                },
                state.text
            );
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .expect("transcript lock")
                .0;
        }
    }

    /// Waits for the reader to see the end, after the child has exited.
    pub fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            // The reader only panics on a poisoned lock, after a panic already being reported.
            let _ = reader.join();
        }
    }
}
