//! Faults: the site's error replies, sent with HTTP 200 as
//! `{"exception": true, "error_code": N, "message": "..."}`.

use serde_json::{json, Value};

/// Error codes the official client gives meaning to, plus the generic ones sites use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad script name, key, login or password (`AuthenticationFault` in the client).
    Authentication,
    /// Bad request content: unknown type or field, bad filter, bad value.
    BadRequest,
    /// Other site-side errors (kept with the number the site gave).
    Other(i64),
}

impl ErrorCode {
    /// The number sent on the wire.
    pub fn as_i64(self) -> i64 {
        match self {
            ErrorCode::Authentication => 102,
            ErrorCode::BadRequest => 103,
            ErrorCode::Other(n) => n,
        }
    }

    /// The code for a number read off the wire.
    pub fn from_i64(n: i64) -> Self {
        match n {
            102 => ErrorCode::Authentication,
            103 => ErrorCode::BadRequest,
            n => ErrorCode::Other(n),
        }
    }
}

/// A fault as the site sends it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error_code {})", code.as_i64())]
pub struct Fault {
    pub code: ErrorCode,
    pub message: String,
}

impl Fault {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }

    /// A fault with code 103, the site's answer to a request it cannot carry out.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Fault::new(ErrorCode::BadRequest, message)
    }

    /// A fault with code 102, the site's answer to bad credentials.
    pub fn authentication(message: impl Into<String>) -> Self {
        Fault::new(ErrorCode::Authentication, message)
    }

    /// The JSON body of this fault.
    pub fn to_json(&self) -> Value {
        json!({"exception": true, "error_code": self.code.as_i64(), "message": self.message})
    }

    /// Reads a fault out of a reply body, if the body is one.
    pub fn from_json(body: &Value) -> Option<Fault> {
        let truthy = match body.get("exception")? {
            Value::Bool(b) => *b,
            Value::Null => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if !truthy {
            return None;
        }
        let code = body.get("error_code").and_then(Value::as_i64).unwrap_or(0);
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("Unknown Error")
            .to_string();
        Some(Fault::new(ErrorCode::from_i64(code), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_round_trips_through_json() {
        let fault = Fault::bad_request("API read() Shot.foo doesn't exist");
        let body = fault.to_json();
        assert_eq!(body["exception"], json!(true));
        assert_eq!(body["error_code"], json!(103));
        assert_eq!(Fault::from_json(&body), Some(fault));
    }

    #[test]
    fn a_result_is_not_a_fault() {
        assert_eq!(Fault::from_json(&json!({"results": []})), None);
        assert_eq!(Fault::from_json(&json!({"exception": false})), None);
    }
}
