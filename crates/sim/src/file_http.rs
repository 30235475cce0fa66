//! HTTP for uploads and downloads (see [`crate::uploads`]): the form posts
//! answer `200 text/plain` with `1:<id>\n` or `0\n<why>`, as sites answer
//! them; a download answers the bytes, `403` to a caller with neither a
//! session nor the file's signature, and `400` to a signed-in caller asking
//! for an attachment without a file. (A site would send a browser to its
//! login page; `403` makes the client raise `ShotgunFileDownloadError`
//! instead of saving the login page as the file.)

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::multipart;
use crate::server::AppState;
use crate::uploads::{DownloadError, UploadError, UploadForm, UploadKind};

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `scheme://host` as the caller reached the site, for download URLs.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn upload(
    state: Arc<AppState>,
    kind: UploadKind,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(failure) = state.delay_or_fail().await {
        return failure;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let base = base_url(&headers);
    let site = state.site.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<i64, UploadError> {
        let boundary = multipart::boundary(&content_type)?;
        let parts = multipart::parse(&body, &boundary)?;
        let form = UploadForm::from_parts(kind, parts)?;
        site.upload(kind, form, &base)
    })
    .await;
    match answer {
        Ok(Ok(id)) => text(StatusCode::OK, format!("1:{id}\n")),
        Ok(Err(e)) => text(StatusCode::OK, format!("0\n{e}\n")),
        Err(join_error) => {
            tracing::error!("upload handler failed: {join_error}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "0\nInternal error\n".into(),
            )
        }
    }
}

/// `POST /upload/upload_file`.
pub(crate) async fn upload_file(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    upload(state, UploadKind::File, headers, body).await
}

/// `POST /upload/publish_thumbnail`.
pub(crate) async fn publish_thumbnail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    upload(state, UploadKind::Thumbnail, headers, body).await
}

/// The `_session_id` cookie of a request.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == "_session_id").then(|| value.trim_matches('"').to_string())
        })
}

/// A file name safe inside a quoted header parameter.
fn quoted_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// `GET /file_serve/attachment/<id>`.
pub(crate) async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(failure) = state.delay_or_fail().await {
        return failure;
    }
    let token = session_cookie(&headers);
    let Ok(id) = id.parse::<i64>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("attachment id must be a whole number, got '{id}'\n"),
        );
    };
    let signature = query.get("signature").map(String::as_str);
    match state.site.download(token.as_deref(), signature, id) {
        Ok(file) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, file.content_type.as_str())
            .header(header::CONTENT_LENGTH, file.data.len())
            .header(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", quoted_name(&file.filename)),
            )
            .body(Body::from(file.data.clone()))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(e @ DownloadError::NotSignedIn) => text(StatusCode::FORBIDDEN, format!("{e}\n")),
        Err(e @ DownloadError::NoSuchAttachment(_)) => {
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; _session_id=abc; b=2".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
        assert_eq!(quoted_name("a\"b.mov"), "a_b.mov");
    }
}
