//! A repeated event logged at most once a minute, with how many times it
//! happened since it was last logged: a failing database or a caller sending
//! read after read over the limits must not fill the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Once a minute at most.
const EVERY: Duration = Duration::from_secs(60);

/// One kind of repeated event.
#[derive(Default)]
pub struct Occasional {
    /// When it was last logged, and how many came since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Occasional {
    /// Counts one more; `Some(count)` when it is time to log, with the count
    /// of events since the last time (this one included).
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        state.1 += 1;
        if state.0.is_some_and(|at| at.elapsed() < EVERY) {
            return None;
        }
        let count = state.1;
        *state = (Some(Instant::now()), 0);
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_the_rest_are_counted() {
        let events = Occasional::default();
        assert_eq!(events.due(), Some(1));
        for _ in 0..5 {
            assert_eq!(events.due(), None);
        }
    }
}
