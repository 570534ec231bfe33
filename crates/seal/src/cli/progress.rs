//! Progress bars for long work, drawn on stderr, one bar per stage; silent when disabled (JSON
//! output, or stderr is not a terminal and the caller asked for quiet).

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;

/// One bar at a time, replaced when the stage changes.
pub struct Bars {
    enabled: bool,
    current: Mutex<Option<(String, ProgressBar)>>,
}

impl Bars {
    /// Bars that draw only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Bars { enabled, current: Mutex::new(None) }
    }

    /// Reports `done` of `total` for `stage`.
    pub fn update(&self, stage: &str, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().map(|(s, _)| s.as_str()) != Some(stage) {
            if let Some((_, bar)) = current.take() {
                bar.finish();
            }
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(stage.to_owned());
            *current = Some((stage.to_owned(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Finishes the last bar.
    pub fn finish(&self) {
        if let Some((_, bar)) = self.current.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish();
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.finish();
    }
}
