//! Who syncs when several `run` processes share one PostgreSQL database:
//! the one holding a session-level advisory lock. The others only serve, and
//! one of them takes over within seconds when the holder dies (its
//! connection closes and PostgreSQL releases the lock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The advisory lock key of a cache database (one per schema).
fn lock_key(schema: &str) -> i64 {
    // FNV-1a, stable across runs and builds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"shotgun-cache sync ".iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Whether this process may sync now.
#[derive(Clone)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
}

impl Leadership {
    /// Always the leader (a SQLite cache has one process).
    pub fn sole() -> Leadership {
        Leadership {
            leader: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Never the leader (a process that only serves).
    pub fn never() -> Leadership {
        Leadership {
            leader: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Competes for the lock of `schema` in the database at `url`, from a
    /// thread of its own, retrying every `retry` while another process holds it.
    pub fn compete(url: &str, schema: &str, retry: Duration) -> Leadership {
        let leader = Arc::new(AtomicBool::new(false));
        let flag = leader.clone();
        let url = url.to_string();
        let key = lock_key(schema);
        std::thread::Builder::new()
            .name("sync-leader".into())
            .spawn(move || loop {
                match postgres::Client::connect(&url, postgres::NoTls) {
                    Ok(mut client) => loop {
                        let held = flag.load(Ordering::Relaxed);
                        let ok = if held {
                            // Still connected means still holding the lock.
                            client.simple_query("SELECT 1").is_ok()
                        } else {
                            match client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]) {
                                Ok(row) => {
                                    let got: bool = row.get(0);
                                    if got {
                                        tracing::info!("this process now keeps the cache in step");
                                        flag.store(true, Ordering::Relaxed);
                                    }
                                    true
                                }
                                Err(_) => false,
                            }
                        };
                        if !ok {
                            flag.store(false, Ordering::Relaxed);
                            break;
                        }
                        std::thread::sleep(retry);
                    },
                    Err(e) => {
                        flag.store(false, Ordering::Relaxed);
                        tracing::warn!("can't reach the cache database to take the sync lock: {e}");
                        std::thread::sleep(retry);
                    }
                }
            })
            .ok();
        Leadership { leader }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_schema_and_stay_put() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}
