//! What the engine's schema stores, as the generator sees it: every value
//! is checked against it before it goes into a record, and list values are
//! picked from the field's valid values.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

use sg_engine::layout::{FieldLayout, Storage};
use sg_engine::Catalog;
use sg_protocol::DataType;

/// What the engine's schema stores: every value is checked against it
/// before it goes into a record, and left out if it would not be valid.
pub(super) struct Shape {
    pub(super) cat: Arc<Catalog>,
}

impl Shape {
    pub(super) fn new(cat: Arc<Catalog>) -> Shape {
        Shape { cat }
    }

    pub(super) fn has(&self, t: &str) -> bool {
        self.cat.layout.table(t).is_some()
    }

    pub(super) fn field(&self, t: &str, field: &str) -> Option<&FieldLayout> {
        self.cat.layout.table(t)?.field(field)
    }

    pub(super) fn valid_values(&self, t: &str, field: &str) -> &[String] {
        match self.cat.schema.entity(t).and_then(|e| e.field(field)) {
            Some(f) => &f.valid_values,
            None => &[],
        }
    }

    fn link_ok(&self, field: &FieldLayout, target: &str) -> bool {
        (field.valid_types.is_empty() || field.valid_types.iter().any(|v| v == target))
            && self.has(target)
    }

    /// `value` as `t.field` may hold it, or `None` to leave the field out.
    pub(super) fn check(&self, t: &str, name: &str, value: Value) -> Option<Value> {
        let field = self.field(t, name)?;
        match field.storage {
            Storage::Id => None,
            Storage::Entity => {
                let target = value.get("type")?.as_str()?;
                self.link_ok(field, target).then_some(value)
            }
            Storage::Links => {
                let Value::Array(items) = value else {
                    return None;
                };
                let kept: Vec<Value> = items
                    .into_iter()
                    .filter(|l| {
                        l.get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|x| self.link_ok(field, x))
                    })
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            _ => {
                if value.is_null() || sg_engine::codec::encode_scalar(field, &value).is_err() {
                    return None;
                }
                if matches!(field.data_type, DataType::List | DataType::StatusList) {
                    let valid = self.valid_values(t, name);
                    let s = value.as_str()?;
                    if !valid.is_empty() && !valid.iter().any(|v| v == s) {
                        return None;
                    }
                }
                Some(value)
            }
        }
    }

    /// One of `choices` (weighted) that the field accepts, else any of its
    /// valid values, else `None`.
    pub(super) fn pick(
        &self,
        rng: &mut StdRng,
        t: &str,
        field: &str,
        choices: &[(&str, u32)],
    ) -> Option<String> {
        let valid = self.valid_values(t, field);
        let ok: Vec<(&str, u32)> = choices
            .iter()
            .copied()
            .filter(|(c, _)| valid.is_empty() || valid.iter().any(|v| v == c))
            .collect();
        let roll: u32 = rng.gen_range(0..ok.iter().map(|c| c.1).sum::<u32>().max(1));
        if ok.is_empty() {
            return valid.get(roll as usize % valid.len().max(1)).cloned();
        }
        let mut acc = 0;
        for (c, w) in &ok {
            acc += w;
            if roll < acc {
                return Some(c.to_string());
            }
        }
        ok.last().map(|c| c.0.to_string())
    }
}
