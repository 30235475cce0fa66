//! Import progress: a bar per type on a terminal, log lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use sg_sync::Progress;

/// Draws one progress bar per imported type.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars on a terminal; `None` when stderr is not one (log lines are used then).
    pub fn on_terminal() -> Option<Bars> {
        std::io::stderr().is_terminal().then(|| Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        })
    }

    fn bar(&self, entity_type: &str, total: Option<u64>) -> Option<ProgressBar> {
        let mut bars = self.bars.lock().ok()?;
        Some(
            bars.entry(entity_type.to_string())
                .or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
                    let style = ProgressStyle::with_template(
                        "{prefix:>18} [{bar:30}] {pos}/{len} {per_sec} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    bar.set_style(style);
                    bar.set_prefix(entity_type.to_string());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                })
                .clone(),
        )
    }
}

impl Progress for Bars {
    fn imported(&self, entity_type: &str, done: u64, total: Option<u64>) {
        if let Some(bar) = self.bar(entity_type, total) {
            if let Some(total) = total {
                bar.set_length(total.max(done));
            }
            bar.set_position(done);
        }
    }

    fn finished(&self, entity_type: &str, records: u64, elapsed: Duration) {
        if let Some(bar) = self.bar(entity_type, Some(records)) {
            bar.set_length(records);
            bar.finish_with_message(format!("done in {:.1} s", elapsed.as_secs_f64()));
        }
    }
}
