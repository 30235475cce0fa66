//! Making records: a [`Builder`] gives each record the next id of its type
//! and holds the seeded randomness and the clock; a [`Rec`] is one record
//! being built, keeping only the values the schema would accept.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map, Value};

use sg_protocol::value::format_date_time;

use super::batch::{Batch, Ids};
use super::shape::Shape;
use super::studio::TAG_NAMES;
use super::HOUR;

/// A link as records store it.
pub(super) fn link(t: &str, id: i64) -> Value {
    json!({"type": t, "id": id})
}

/// A date-time value.
pub(super) fn stamp(t: i64) -> Value {
    Value::String(format_date_time(t))
}

/// The date of a time, as date fields hold it.
pub(super) fn date(t: i64) -> Value {
    let day = chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d").to_string());
    day.map(Value::String).unwrap_or(Value::Null)
}

/// A record being built; values the schema would refuse are left out.
pub(super) struct Rec<'s> {
    shape: &'s Shape,
    t: &'static str,
    pub(super) m: Map<String, Value>,
}

impl Rec<'_> {
    pub(super) fn set(&mut self, field: &str, value: impl Into<Value>) -> &mut Self {
        if let Some(v) = self.shape.check(self.t, field, value.into()) {
            self.m.insert(field.to_string(), v);
        }
        self
    }

    pub(super) fn link(&mut self, field: &str, target: &str, id: Option<i64>) -> &mut Self {
        match id {
            Some(id) => self.set(field, link(target, id)),
            None => self,
        }
    }

    pub(super) fn links(&mut self, field: &str, targets: &[(&str, i64)]) -> &mut Self {
        self.set(
            field,
            Value::Array(targets.iter().map(|(t, id)| link(t, *id)).collect()),
        )
    }

    pub(super) fn pick(
        &mut self,
        rng: &mut StdRng,
        field: &str,
        choices: &[(&str, u32)],
    ) -> &mut Self {
        match self.shape.pick(rng, self.t, field, choices) {
            Some(v) => self.set(field, v),
            None => self,
        }
    }

    /// created_at/by and updated_at/by.
    pub(super) fn audit(
        &mut self,
        created: i64,
        by: &Value,
        updated: i64,
        updated_by: &Value,
    ) -> &mut Self {
        self.set("created_at", stamp(created));
        self.set("created_by", by.clone());
        self.set("updated_at", stamp(updated.max(created)));
        self.set("updated_by", updated_by.clone())
    }
}

/// Builds one batch of records.
pub(super) struct Builder<'s, 'i> {
    pub(super) shape: &'s Shape,
    pub(super) ids: &'i mut Ids,
    pub(super) batch: Batch,
    pub(super) rng: StdRng,
    pub(super) now: i64,
}

impl<'s, 'i> Builder<'s, 'i> {
    pub(super) fn new(
        shape: &'s Shape,
        ids: &'i mut Ids,
        rng: StdRng,
        now: i64,
    ) -> Builder<'s, 'i> {
        Builder {
            shape,
            ids,
            batch: Batch::default(),
            rng,
            now,
        }
    }

    pub(super) fn rec(&self, t: &'static str) -> Rec<'s> {
        Rec {
            shape: self.shape,
            t,
            m: Map::new(),
        }
    }

    /// Stores a record under the next id of its type; `None` if the schema has no such type.
    pub(super) fn add(&mut self, mut rec: Rec<'_>) -> Option<i64> {
        if !self.shape.has(rec.t) {
            return None;
        }
        let id = self.ids.next(rec.t)?;
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.append(&mut rec.m);
        self.batch.push(rec.t, id, m);
        Some(id)
    }

    /// A time between `a` and `b`, never after now.
    pub(super) fn between(&mut self, a: i64, b: i64) -> i64 {
        let b = b.min(self.now - HOUR);
        let a = a.min(b);
        if a >= b {
            a
        } else {
            self.rng.gen_range(a..=b)
        }
    }

    /// The tag names of one record: none for most, else one or two.
    pub(super) fn some_tags(&mut self) -> Value {
        let count = *self.weighted(&[(0usize, 6u32), (1, 3), (2, 1)], |c| c.1);
        let names: Vec<&str> = TAG_NAMES
            .choose_multiple(&mut self.rng, count.0)
            .copied()
            .collect();
        json!(names)
    }

    /// One of `items`, each as likely as its weight.
    pub(super) fn weighted<'a, T>(&mut self, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
        let total: u32 = items.iter().map(&weight).sum();
        let mut roll = self.rng.gen_range(0..total.max(1));
        for item in items {
            let w = weight(item);
            if roll < w {
                return item;
            }
            roll -= w;
        }
        &items[items.len() - 1]
    }
}
