//! Progress output for `once` and `retry`: a bar on a terminal, plain lines otherwise.

use crate::worker::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts outcomes and shows them.
pub struct Reporter {
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

struct State {
    claimed: u64,
    done: u64,
    statuses: BTreeMap<String, u64>,
    started: Instant,
    last_line: Instant,
}

impl Reporter {
    /// `expected`: images due when the run started (the bar grows if more arrive).
    pub fn new(expected: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(expected.max(1));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} images  {per_sec}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Reporter {
            bar,
            state: Mutex::new(State {
                claimed: 0,
                done: 0,
                statuses: BTreeMap::new(),
                started: Instant::now(),
                last_line: Instant::now(),
            }),
        }
    }

    fn summary(s: &State) -> String {
        s.statuses
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Final line.
    pub fn finish(&self) {
        let s = self.state.lock().expect("progress");
        let secs = s.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "done: {} images in {:.1}s ({:.1}/s): {}",
            s.done,
            secs,
            s.done as f64 / secs,
            Self::summary(&s)
        );
        match &self.bar {
            Some(b) => b.finish_with_message(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Progress for Reporter {
    fn claimed(&self, n: u64) {
        let mut s = self.state.lock().expect("progress");
        s.claimed += n;
        if let Some(b) = &self.bar {
            if s.claimed > b.length().unwrap_or(0) {
                b.set_length(s.claimed);
            }
        }
    }

    fn recorded(&self, status: &str) {
        let mut s = self.state.lock().expect("progress");
        s.done += 1;
        *s.statuses.entry(status.to_string()).or_insert(0) += 1;
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.set_message(Self::summary(&s));
            }
            None => {
                if s.last_line.elapsed() >= Duration::from_secs(2) {
                    s.last_line = Instant::now();
                    let secs = s.started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "progress: {}/{} images ({:.1}/s): {}",
                        s.done,
                        s.claimed,
                        s.done as f64 / secs,
                        Self::summary(&s)
                    );
                }
            }
        }
    }
}
