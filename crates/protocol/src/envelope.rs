//! The request envelope `{"method_name", "params": [auth, args]}`, the auth
//! block in all its forms, and the reply wrapper `{"results": ...}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::fault::Fault;

/// One decoded call.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method_name: String,
    /// The auth block; absent only for `info`.
    pub auth: Option<Auth>,
    /// The method's own parameters (an object, or an array for `batch`); absent when empty.
    pub params: Option<Value>,
}

impl Request {
    /// Decodes a request body. Any malformed shape gives a fault, never a panic.
    pub fn from_slice(body: &[u8]) -> Result<Request, Fault> {
        Envelope::from_slice(body)?.into_request()
    }

    /// Decodes an already parsed request body, the same way as its text.
    pub fn from_json(value: &Value) -> Result<Request, Fault> {
        Request::from_slice(value.to_string().as_bytes())
    }

    /// Encodes the request as the official client does.
    pub fn to_json(&self) -> Value {
        let mut params = Vec::new();
        if let Some(auth) = &self.auth {
            params.push(auth.to_json());
        }
        if let Some(p) = &self.params {
            params.push(p.clone());
        }
        json!({"method_name": self.method_name, "params": params})
    }

    /// The method params as an object, or a fault naming the method.
    pub fn params_object(&self) -> Result<&Map<String, Value>, Fault> {
        match &self.params {
            Some(Value::Object(map)) => Ok(map),
            _ => Err(Fault::bad_request(format!(
                "API {}() expects its parameters as a dictionary",
                self.method_name
            ))),
        }
    }
}

/// A request body with its envelope and auth block decoded and the method's
/// params left as text: a caller's credentials can be checked before the rest
/// of a body, however large, becomes a tree of values. Decoding the envelope
/// costs no memory beyond the body itself (the params are borrowed from it).
#[derive(Debug)]
pub struct Envelope<'a> {
    pub method_name: String,
    /// The auth block; absent only for `info`.
    pub auth: Option<Auth>,
    /// The method's own parameters, as sent.
    pub params: Option<&'a RawValue>,
}

/// The top level of a body; every other key is skipped without being kept.
#[derive(Deserialize)]
struct RawTop<'a> {
    #[serde(borrow, default)]
    method_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// A JSON value read as strictly as a `serde_json::Value` is (string escapes,
/// number ranges, nesting depth) without keeping any of it: a body that a
/// site could not read is found before its credentials are looked at, at no
/// cost in memory.
struct Validated;

impl<'de> Deserialize<'de> for Validated {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValidatedVisitor)
    }
}

struct ValidatedVisitor;

impl<'de> serde::de::Visitor<'de> for ValidatedVisitor {
    type Value = Validated;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Validated, E> {
        Ok(Validated)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Validated, E> {
        Ok(Validated)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Validated, E> {
        Ok(Validated)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Validated, E> {
        Ok(Validated)
    }
    fn visit_str<E>(self, _: &str) -> Result<Validated, E> {
        Ok(Validated)
    }
    fn visit_unit<E>(self) -> Result<Validated, E> {
        Ok(Validated)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Validated, A::Error> {
        while seq.next_element::<Validated>()?.is_some() {}
        Ok(Validated)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Validated, A::Error> {
        while map.next_entry::<Validated, Validated>()?.is_some() {}
        Ok(Validated)
    }
}

fn invalid_auth(e: serde_json::Error) -> Fault {
    Fault::authentication(format!("Invalid authentication block: {e}"))
}

fn invalid_json(e: serde_json::Error) -> Fault {
    Fault::bad_request(format!("Invalid JSON in request body: {e}"))
}

impl<'a> Envelope<'a> {
    /// Decodes the envelope and the auth block of a request body.
    pub fn from_slice(body: &'a [u8]) -> Result<Envelope<'a>, Fault> {
        // Skipping the params would not check them; a body the site could
        // not read must get the site's fault, not 102.
        serde_json::from_slice::<Validated>(body).map_err(invalid_json)?;
        let top: RawTop<'a> = match serde_json::from_slice(body) {
            Ok(top) => top,
            Err(e) if e.is_data() => {
                return Err(Fault::bad_request("Request body must be a JSON object"))
            }
            Err(e) => return Err(invalid_json(e)),
        };
        let method_name = top
            .method_name
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or_else(|| Fault::bad_request("Request is missing 'method_name'"))?;
        let items: Vec<&'a RawValue> = match top.params {
            None => Vec::new(),
            Some(raw) if raw.get() == "null" => Vec::new(),
            Some(raw) if raw.get().starts_with('[') => {
                serde_json::from_str(raw.get()).map_err(invalid_json)?
            }
            Some(_) => return Err(Fault::bad_request("'params' must be a list")),
        };
        let mut items = items.into_iter();
        let mut auth = None;
        let mut params = None;
        if let Some(first) = items.next() {
            if Auth::looks_like_auth_text(first) {
                auth = Some(Auth::from_raw(first)?);
                params = items.next();
            } else {
                params = Some(first);
            }
        }
        if items.next().is_some() {
            return Err(Fault::bad_request("Too many elements in 'params'"));
        }
        Ok(Envelope {
            method_name,
            auth,
            params,
        })
    }

    /// The whole request, its params decoded.
    pub fn into_request(self) -> Result<Request, Fault> {
        let params = match self.params {
            None => None,
            Some(raw) => Some(serde_json::from_str::<Value>(raw.get()).map_err(invalid_json)?),
        };
        Ok(Request {
            method_name: self.method_name,
            auth: self.auth,
            params,
        })
    }
}

/// The credentials of the auth block, in the forms the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Script {
        script_name: String,
        script_key: String,
    },
    User {
        login: String,
        password: String,
        auth_token: Option<String>,
    },
    Session {
        token: String,
    },
}

/// The whole auth block: credentials plus the keys merged in afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub script_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub script_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reject_if_expired: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sudo_as_login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_uuid: Option<String>,
    /// `config.extra_auth_params` and anything else the caller merged in.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Auth {
    /// Script-key credentials.
    pub fn script(name: &str, key: &str) -> Auth {
        Auth {
            script_name: Some(name.to_string()),
            script_key: Some(key.to_string()),
            ..Auth::empty()
        }
    }

    /// User login credentials.
    pub fn user(login: &str, password: &str) -> Auth {
        Auth {
            user_login: Some(login.to_string()),
            user_password: Some(password.to_string()),
            ..Auth::empty()
        }
    }

    /// Session-token credentials.
    pub fn session(token: &str) -> Auth {
        Auth {
            session_token: Some(token.to_string()),
            ..Auth::empty()
        }
    }

    fn empty() -> Auth {
        Auth {
            script_name: None,
            script_key: None,
            user_login: None,
            user_password: None,
            auth_token: None,
            session_token: None,
            reject_if_expired: None,
            sudo_as_login: None,
            session_uuid: None,
            extra: Map::new(),
        }
    }

    /// Whether a params element is an auth block, read without decoding
    /// its values (only its keys are looked at).
    fn looks_like_auth_text(raw: &RawValue) -> bool {
        if !raw.get().starts_with('{') {
            return false;
        }
        serde_json::from_str::<
            std::collections::HashMap<std::borrow::Cow<'_, str>, serde::de::IgnoredAny>,
        >(raw.get())
        .is_ok_and(|keys| {
            ["script_name", "user_login", "session_token", "script_key"]
                .iter()
                .any(|k| keys.contains_key(*k))
        })
    }

    /// Decodes an auth block from its text.
    fn from_raw(raw: &RawValue) -> Result<Auth, Fault> {
        serde_json::from_str(raw.get()).map_err(invalid_auth)
    }

    /// Reads an auth block; a block that is not an object is a fault.
    pub fn from_json(value: &Value) -> Result<Auth, Fault> {
        serde_json::from_value(value.clone()).map_err(invalid_auth)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Which credentials the block carries, in the client's order of preference.
    pub fn credentials(&self) -> Option<Credentials> {
        if let (Some(login), Some(password)) = (&self.user_login, &self.user_password) {
            return Some(Credentials::User {
                login: login.clone(),
                password: password.clone(),
                auth_token: self.auth_token.clone(),
            });
        }
        if let (Some(name), Some(key)) = (&self.script_name, &self.script_key) {
            return Some(Credentials::Script {
                script_name: name.clone(),
                script_key: key.clone(),
            });
        }
        self.session_token
            .as_ref()
            .map(|t| Credentials::Session { token: t.clone() })
    }
}

/// A successful reply body.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Wrapped as `{"results": value}`, as for every method but `info`.
    Results(Value),
    /// Sent as it is (`info`).
    Bare(Value),
}

impl Reply {
    pub fn to_json(&self) -> Value {
        match self {
            Reply::Results(v) => json!({ "results": v }),
            Reply::Bare(v) => v.clone(),
        }
    }

    /// The reply body as JSON text, the same as `to_json().to_string()`
    /// without copying the value first.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing a `Value` into a `Vec` can't fail.
        match self {
            Reply::Results(v) => {
                out.extend_from_slice(b"{\"results\":");
                let _ = serde_json::to_writer(&mut out, v);
                out.push(b'}');
            }
            Reply::Bare(v) => {
                let _ = serde_json::to_writer(&mut out, v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_auth_form() {
        let script = json!({"method_name": "read", "params": [{"script_name": "s", "script_key": "k", "sudo_as_login": "bob", "session_uuid": "u"}, {"type": "Shot"}]});
        let req = Request::from_json(&script).unwrap();
        let auth = req.auth.clone().unwrap();
        assert_eq!(
            auth.credentials(),
            Some(Credentials::Script {
                script_name: "s".into(),
                script_key: "k".into()
            })
        );
        assert_eq!(auth.sudo_as_login.as_deref(), Some("bob"));
        assert_eq!(auth.session_uuid.as_deref(), Some("u"));
        assert_eq!(req.params, Some(json!({"type": "Shot"})));

        let user = json!({"user_login": "u", "user_password": "p", "auth_token": "123"});
        let auth = Auth::from_json(&user).unwrap();
        assert!(matches!(
            auth.credentials(),
            Some(Credentials::User {
                auth_token: Some(_),
                ..
            })
        ));

        let session = json!({"session_token": "t", "reject_if_expired": true, "product": "rv"});
        let auth = Auth::from_json(&session).unwrap();
        assert_eq!(
            auth.credentials(),
            Some(Credentials::Session { token: "t".into() })
        );
        assert_eq!(auth.extra.get("product"), Some(&json!("rv")));
        assert_eq!(auth.to_json()["product"], json!("rv"));
    }

    #[test]
    fn info_has_no_auth_and_no_params() {
        let req = Request::from_slice(br#"{"method_name":"info","params":[]}"#).unwrap();
        assert_eq!(req.method_name, "info");
        assert!(req.auth.is_none() && req.params.is_none());
    }

    #[test]
    fn malformed_envelopes_are_faults() {
        for body in [
            &b"not json"[..],
            br#"[1,2]"#,
            br#"{"params":[]}"#,
            br#"{"method_name":"read","params":{"a":1}}"#,
            br#"{"method_name":"read","params":[{"script_name":"a","script_key":"b"},{},{}]}"#,
            br#"{"method_name":7}"#,
        ] {
            let fault = Request::from_slice(body).unwrap_err();
            assert_eq!(
                fault.code.as_i64(),
                103,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn too_deep_params_are_invalid_json_before_credentials_are_read() {
        let deep = format!(
            r#"{{"method_name": "read", "params": {}{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let fault = Envelope::from_slice(deep.as_bytes()).unwrap_err();
        assert_eq!(fault.code.as_i64(), 103);
        assert!(
            fault.message.contains("recursion limit"),
            "{}",
            fault.message
        );
        // Brackets inside strings are text, and a depth serde reads is fine.
        let fine = format!(
            r#"{{"method_name": "read", "params": [{{"script_name": "{}", "script_key": "k"}}, {}1{}]}}"#,
            "[".repeat(500),
            "[".repeat(100),
            "]".repeat(100)
        );
        let envelope = Envelope::from_slice(fine.as_bytes()).unwrap();
        assert!(envelope.auth.is_some());
        assert!(envelope.into_request().is_ok());
    }

    #[test]
    fn bodies_a_value_cannot_hold_are_invalid_json_whatever_the_credentials() {
        let auth = r#"{"script_name": "s", "script_key": "k"}"#;
        for params in [
            r#"{"type": "\ud800"}"#,
            r#"{"type": "Shot", "values": [1e999999]}"#,
            r#"{"type": "Shot", "bad": "\x"}"#,
        ] {
            let body = format!(r#"{{"method_name": "read", "params": [{auth}, {params}]}}"#);
            let expected = serde_json::from_str::<Value>(&body)
                .unwrap_err()
                .to_string();
            let fault = Envelope::from_slice(body.as_bytes()).unwrap_err();
            assert_eq!(
                fault.message,
                format!("Invalid JSON in request body: {expected}")
            );
        }
    }

    #[test]
    fn request_encodes_as_the_client_does() {
        let req = Request {
            method_name: "read".into(),
            auth: Some(Auth::script("s", "k")),
            params: Some(json!({"type": "Shot"})),
        };
        assert_eq!(
            req.to_json(),
            json!({"method_name": "read", "params": [{"script_name": "s", "script_key": "k"}, {"type": "Shot"}]})
        );
    }

    #[test]
    fn replies_wrap_results_but_not_info() {
        assert_eq!(
            Reply::Results(json!(true)).to_json(),
            json!({"results": true})
        );
        assert_eq!(
            Reply::Bare(json!({"version": [8]})).to_json(),
            json!({"version": [8]})
        );
    }

    #[test]
    fn reply_text_is_the_json_printed() {
        for reply in [
            Reply::Results(json!({"entities": [{"type": "Shot", "id": 1, "code": "a\"b"}]})),
            Reply::Bare(json!({"version": [8, 0, 0]})),
        ] {
            assert_eq!(reply.to_text(), reply.to_json().to_string().into_bytes());
        }
    }
}
