//! Where rendered results go: one walk over a result emits JSON events into
//! a [`Sink`], which either writes JSON text straight into bytes
//! ([`JsonBytes`], what the proxy sends) or builds a [`serde_json::Value`]
//! ([`ValueTree`], for callers that look inside). Both give the same JSON,
//! because the walk — key order, nulls, hidden links — is written once.

use serde_json::{Map, Value};

use crate::codec::{decode_scalar, write_scalar};
use crate::layout::Storage;
use crate::sql::SqlValue;

/// Receives a JSON document as a stream of events, in document order.
pub trait Sink {
    fn begin_object(&mut self);
    /// The key of the next value inside an object.
    fn key(&mut self, key: &str);
    fn end_object(&mut self);
    fn begin_array(&mut self);
    fn end_array(&mut self);
    fn null(&mut self);
    fn bool(&mut self, value: bool);
    fn int(&mut self, value: i64);
    fn uint(&mut self, value: u64);
    fn str(&mut self, value: &str);
    /// A stored value shown in its wire shape (see [`crate::codec`]).
    fn scalar(&mut self, storage: Storage, value: &SqlValue);
}

/// JSON text, compact, exactly as `serde_json` would print the same `Value`.
#[derive(Debug, Default)]
pub struct JsonBytes {
    pub out: Vec<u8>,
    /// A value has just ended, so the next key or value needs a comma first.
    after_value: bool,
}

impl JsonBytes {
    /// Appends to `out` (which may already hold the start of an envelope).
    pub fn new(out: Vec<u8>) -> JsonBytes {
        JsonBytes {
            out,
            after_value: false,
        }
    }

    fn separate(&mut self) {
        if self.after_value {
            self.out.push(b',');
        }
    }

    fn raw_value(&mut self, text: &[u8]) {
        self.separate();
        self.out.extend_from_slice(text);
        self.after_value = true;
    }
}

/// Writes a string with `serde_json`'s escaping: `"` and `\` and the
/// control characters below U+0020 (`\b \t \n \f \r` by name, the rest
/// as `\u00xx`); nothing else, not even U+007F or `/`. Most text has
/// nothing to escape and is copied whole, which is several times quicker
/// than going through a serializer for every value.
pub(crate) fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        i += plain_run(&bytes[i..]);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        out.extend_from_slice(&bytes[start..i]);
        i += 1;
        start = i;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// How many bytes at the start of `bytes` need no escaping. Looks at eight
/// bytes at a time: a word holds a byte to escape when one of its bytes is
/// below 0x20 or equals `"` or `\\` (the usual zero-byte tests, which never
/// miss one and only err, towards "yes", in a word that has one).
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let needs_escape = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut i = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * b'"' as u64);
        let backslash = w ^ (ONES * b'\\' as u64);
        let hit = (w.wrapping_sub(ONES * 0x20) & !w)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash);
        if hit & HIGH != 0 {
            break;
        }
        i += 8;
    }
    i + bytes[i..].iter().take_while(|&&b| !needs_escape(b)).count()
}

impl Sink for JsonBytes {
    fn begin_object(&mut self) {
        self.separate();
        self.out.push(b'{');
        self.after_value = false;
    }
    fn key(&mut self, key: &str) {
        self.separate();
        write_str(&mut self.out, key);
        self.out.push(b':');
        self.after_value = false;
    }
    fn end_object(&mut self) {
        self.out.push(b'}');
        self.after_value = true;
    }
    fn begin_array(&mut self) {
        self.separate();
        self.out.push(b'[');
        self.after_value = false;
    }
    fn end_array(&mut self) {
        self.out.push(b']');
        self.after_value = true;
    }
    fn null(&mut self) {
        self.raw_value(b"null");
    }
    fn bool(&mut self, value: bool) {
        self.raw_value(if value { b"true" } else { b"false" });
    }
    fn int(&mut self, value: i64) {
        self.separate();
        let _ = serde_json::to_writer(&mut self.out, &value);
        self.after_value = true;
    }
    fn uint(&mut self, value: u64) {
        self.separate();
        let _ = serde_json::to_writer(&mut self.out, &value);
        self.after_value = true;
    }
    fn str(&mut self, value: &str) {
        self.separate();
        write_str(&mut self.out, value);
        self.after_value = true;
    }
    fn scalar(&mut self, storage: Storage, value: &SqlValue) {
        self.separate();
        write_scalar(&mut self.out, storage, value);
        self.after_value = true;
    }
}

/// An open container while a [`ValueTree`] is built.
enum Frame {
    Object(Map<String, Value>, String),
    Array(Vec<Value>),
}

/// Builds a `serde_json::Value` from the events.
#[derive(Default)]
pub struct ValueTree {
    open: Vec<Frame>,
    done: Option<Value>,
}

impl ValueTree {
    /// The finished value (null if nothing was emitted).
    pub fn finish(self) -> Value {
        self.done.unwrap_or(Value::Null)
    }

    fn put(&mut self, value: Value) {
        match self.open.last_mut() {
            Some(Frame::Object(map, key)) => {
                map.insert(std::mem::take(key), value);
            }
            Some(Frame::Array(items)) => items.push(value),
            None => self.done = Some(value),
        }
    }
}

impl Sink for ValueTree {
    fn begin_object(&mut self) {
        self.open.push(Frame::Object(Map::new(), String::new()));
    }
    fn key(&mut self, key: &str) {
        if let Some(Frame::Object(_, pending)) = self.open.last_mut() {
            *pending = key.to_string();
        }
    }
    fn end_object(&mut self) {
        if let Some(Frame::Object(map, _)) = self.open.pop() {
            self.put(Value::Object(map));
        }
    }
    fn begin_array(&mut self) {
        self.open.push(Frame::Array(Vec::new()));
    }
    fn end_array(&mut self) {
        if let Some(Frame::Array(items)) = self.open.pop() {
            self.put(Value::Array(items));
        }
    }
    fn null(&mut self) {
        self.put(Value::Null);
    }
    fn bool(&mut self, value: bool) {
        self.put(Value::Bool(value));
    }
    fn int(&mut self, value: i64) {
        self.put(Value::from(value));
    }
    fn uint(&mut self, value: u64) {
        self.put(Value::from(value));
    }
    fn str(&mut self, value: &str) {
        self.put(Value::String(value.to_string()));
    }
    fn scalar(&mut self, storage: Storage, value: &SqlValue) {
        self.put(decode_scalar(storage, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(sink: &mut dyn Sink) {
        sink.begin_object();
        sink.key("a");
        sink.begin_array();
        sink.int(-1);
        sink.uint(2);
        sink.begin_object();
        sink.end_object();
        sink.begin_array();
        sink.end_array();
        sink.null();
        sink.end_array();
        sink.key("b\"\n");
        sink.str("é\u{1}\\");
        sink.key("c");
        sink.bool(false);
        sink.key("d");
        sink.scalar(Storage::Real, &SqlValue::Real(1.0));
        sink.key("e");
        sink.scalar(
            Storage::Json,
            &SqlValue::Text("{\"z\": 1, \"a\": [2]}".into()),
        );
        sink.end_object();
    }

    /// Every character's escaping is serde_json's, alone and inside text.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = (0u32..0x300)
            .chain([0x2028, 0x2029, 0xfeff, 0xfffd, 0x1f600])
            .filter_map(char::from_u32)
            .flat_map(|c| [c.to_string(), format!("a{c}b{c}{c}")])
            .collect();
        // Each place in and across the eight-byte words scanned at once.
        for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '\u{7f}', 'é'] {
            for at in 0..20 {
                samples.push(format!("{}{c}{}", "x".repeat(at), "y".repeat(20 - at)));
            }
        }
        samples.extend([
            "".to_string(),
            "plain".to_string(),
            "\"\\\n\u{7f}/é".to_string(),
        ]);
        for sample in samples {
            let mut out = Vec::new();
            write_str(&mut out, &sample);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&sample).unwrap(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn bytes_and_values_print_alike() {
        let mut bytes = JsonBytes::default();
        emit(&mut bytes);
        let mut tree = ValueTree::default();
        emit(&mut tree);
        let value = tree.finish();
        assert_eq!(String::from_utf8(bytes.out).unwrap(), value.to_string());
        assert_eq!(value["e"], serde_json::json!({"z": 1, "a": [2]}));
    }
}
