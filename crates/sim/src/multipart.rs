//! A `multipart/form-data` body split into its parts, as upload forms send
//! them: plain fields and files, each part's bytes a zero-copy slice of the
//! body (a 50 MB upload is never copied).

use axum::body::Bytes;

/// Why a body is not a readable form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("expected a multipart/form-data body with a boundary")]
    NotMultipart,
    #[error("the form has no opening boundary")]
    NoOpening,
    #[error("a part of the form has no end of headers")]
    UnterminatedHeaders,
    #[error("a part of the form has no closing boundary")]
    UnterminatedPart,
    #[error("a part of the form has no name")]
    NoName,
}

/// One part of a form.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    /// Set for a file part.
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

impl Part {
    /// The value of a plain field, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or(MultipartError::NotMultipart)
}

/// Where `needle` first occurs in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= haystack.len() {
        let offset = haystack[at..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        at += offset;
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// `name="value"` parameters of a `Content-Disposition` header.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `body` into its parts.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let start = find(body, opening.as_bytes(), 0).ok_or(MultipartError::NoOpening)?;
    let mut at = start + opening.len();
    let mut parts = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        // The rest of the delimiter line (transport padding, then CRLF).
        let line_end = find(body, b"\r\n", at).ok_or(MultipartError::UnterminatedHeaders)?;
        let headers_start = line_end + 2;
        let headers_end = if body[headers_start..].starts_with(b"\r\n") {
            headers_start
        } else {
            find(body, b"\r\n\r\n", headers_start).ok_or(MultipartError::UnterminatedHeaders)? + 2
        };
        let data_start = headers_end + 2;
        let data_end =
            find(body, delimiter.as_bytes(), data_start).ok_or(MultipartError::UnterminatedPart)?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]);
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(value, "name");
                filename = disposition_param(value, "filename");
            } else if key.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_string());
            }
        }
        parts.push(Part {
            name: name.ok_or(MultipartError::NoName)?,
            filename,
            content_type,
            data: body.slice(data_start..data_end),
        });
        at = data_end + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_files_as_the_python_client_writes_them() {
        let body = Bytes::from_static(
            b"--abc\r\nContent-Disposition: form-data; name=\"entity_id\"\r\n\r\n12\r\n\
              --abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mov\"\r\n\
              Content-Type: video/quicktime\r\nContent-Length: 7\r\n\r\n\r\n--ab\0x\r\n--abc--\r\n\r\n",
        );
        let parts = parse(&body, "abc").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "entity_id");
        assert_eq!(parts[0].text(), "12");
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].filename.as_deref(), Some("a.mov"));
        assert_eq!(parts[1].content_type.as_deref(), Some("video/quicktime"));
        assert_eq!(&parts[1].data[..], b"\r\n--ab\0x");
    }

    #[test]
    fn finds_the_boundary_and_refuses_what_is_not_a_form() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"x-1\"").unwrap(),
            "x-1"
        );
        assert_eq!(
            boundary("application/x-www-form-urlencoded"),
            Err(MultipartError::NotMultipart)
        );
        let cut = Bytes::from_static(b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1");
        assert_eq!(
            parse(&cut, "b").unwrap_err(),
            MultipartError::UnterminatedPart
        );
        assert_eq!(
            parse(&Bytes::from_static(b"nothing"), "b").unwrap_err(),
            MultipartError::NoOpening
        );
        assert!(parse(&Bytes::from_static(b"--b--\r\n"), "b")
            .unwrap()
            .is_empty());
    }
}
