//! Who syncs when several `run` processes share one PostgreSQL database:
//! the one holding the store's session lock for the sync. The others only
//! serve, and one of them takes over within seconds when the holder dies
//! (its connection closes and PostgreSQL releases the lock).
//!
//! The store takes, holds and checks the lock
//! ([`Store::hold_session_lock`]); this module decides when to ask and what
//! the answer means for the sync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sg_engine::{Engine, Store};

/// The name of the sync's lock in a cache database (one per schema). Earlier
/// builds keyed theirs by the same text, so processes of both agree.
fn lock_name(schema: &str) -> String {
    format!("shotgun-cache sync {schema}")
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

    /// Competes for the sync lock of `schema` in `engine`'s store, from a
    /// thread of its own (the store's client must not run on an async
    /// thread), asking again every `retry` while another process holds it.
    /// Returns once the first answer is in (or after `retry` at the most),
    /// so that a process that may sync starts with its first step. The
    /// thread ends once the engine is dropped.
    pub async fn compete<S: Store>(
        engine: &Arc<Engine<S>>,
        schema: &str,
        retry: Duration,
    ) -> Leadership {
        let leader = Arc::new(AtomicBool::new(false));
        let flag = leader.clone();
        let engine = Arc::downgrade(engine);
        let name = lock_name(schema);
        let (answered, first_answer) = tokio::sync::oneshot::channel::<()>();
        let mut answered = Some(answered);
        std::thread::Builder::new()
            .name("sync-leader".into())
            .spawn(move || loop {
                let Some(engine) = engine.upgrade() else {
                    flag.store(false, Ordering::Relaxed);
                    return;
                };
                let held = match engine.store().hold_session_lock(&name) {
                    Ok(held) => held,
                    Err(e) => {
                        tracing::warn!("can't reach the cache database to take the sync lock: {e}");
                        false
                    }
                };
                drop(engine);
                let was = flag.swap(held, Ordering::Relaxed);
                if held && !was {
                    tracing::info!("this process now keeps the cache in step");
                }
                if let Some(answered) = answered.take() {
                    let _ = answered.send(());
                }
                std::thread::sleep(retry);
            })
            .ok();
        let _ = tokio::time::timeout(retry, first_answer).await;
        Leadership { leader }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sg_engine::{PostgresStore, SqliteStore};

    fn schema() -> sg_protocol::Schema {
        sg_protocol::Schema::from_json(&serde_json::json!({}), None).expect("an empty schema")
    }

    /// Of two processes on one PostgreSQL database, one syncs; the other
    /// takes over once the first is gone. A SQLite store always leads.
    #[tokio::test(flavor = "multi_thread")]
    async fn one_of_two_leads_and_the_other_takes_over() {
        let url = sg_engine::postgres::DEFAULT_TEST_URL;
        let schema_name = format!(
            "leader_test_{}_{:?}",
            std::process::id(),
            std::time::Instant::now()
        );
        let open = || {
            tokio::task::spawn_blocking(move || {
                let store = PostgresStore::connect(url, None).expect("the test server");
                Arc::new(Engine::new(store, schema()).expect("an engine"))
            })
        };
        let (first, second) = (open().await.expect("opens"), open().await.expect("opens"));
        let retry = Duration::from_millis(50);
        let a = Leadership::compete(&first, &schema_name, retry).await;
        let b = Leadership::compete(&second, &schema_name, retry).await;
        assert!(a.is_leader() && !b.is_leader());
        tokio::time::sleep(retry * 4).await;
        assert!(a.is_leader() && !b.is_leader(), "the lead stays put");
        // Dropped off the async threads, as the store must be.
        tokio::task::spawn_blocking(move || drop(first))
            .await
            .expect("drops");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (a.is_leader() || !b.is_leader()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(retry).await;
        }
        assert!(b.is_leader(), "the second takes over");
        assert!(!a.is_leader(), "the first's thread lets go");
        tokio::task::spawn_blocking(move || drop(second))
            .await
            .expect("drops");

        let sqlite = Arc::new(
            Engine::new(SqliteStore::open_temporary().expect("a store"), schema())
                .expect("an engine"),
        );
        assert!(Leadership::compete(&sqlite, "public", retry)
            .await
            .is_leader());
    }
}
