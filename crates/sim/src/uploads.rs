//! Uploads and downloads as a site without direct S3 uploads does them.
//!
//! - `POST /upload/upload_file` (a form: the caller's auth fields,
//!   `entity_type`, `entity_id`, `field_name`, `display_name`, `file`) creates
//!   an `Attachment` linked to the entity, sets the entity's url field
//!   `field_name` to the attachment's value, logs what that create and that
//!   update log, and answers `1:<attachment id>\n`;
//! - `POST /upload/publish_thumbnail` (`thumb_image`, `filmstrip`) does the
//!   same for the entity's `image` (or `filmstrip_image`) field;
//! - `GET /file_serve/attachment/<id>` gives the bytes to a caller signed in
//!   with the `_session_id` cookie, and to the holder of the file's link.
//!
//! The links in url fields have a site's shape (`url`, `name`,
//! `content_type`, `link_type: "upload"`, `type: "Attachment"`, `id`), but
//! their `url` carries the file's signature (`?signature=<hex>`), as the
//! signed storage URLs of hosted sites do. That is because the official client
//! scopes its `_session_id` cookie to `host:port`, which `http.cookiejar`
//! never matches, so against a site on an explicit port (every simulated
//! site) it downloads without any cookie.
//!
//! Everything here is the site's side; [`crate::file_http`] is the HTTP.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use sg_engine::EngineError;
use sg_protocol::{Auth, DataType, Fault};

use crate::files::StoredFile;
use crate::methods::Site;
use crate::multipart::{MultipartError, Part};
use crate::writes::{FieldWrite, UpdateMode};

/// Why an upload was refused; the reply is `0\n` and this text.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Form(#[from] MultipartError),
    #[error("the form has no '{0}' field")]
    Missing(&'static str),
    #[error("entity_id must be a whole number, got '{0}'")]
    BadId(String),
    #[error("{0}")]
    Refused(String),
}

impl From<Fault> for UploadError {
    fn from(fault: Fault) -> UploadError {
        UploadError::Refused(fault.message)
    }
}

/// Why a download was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// No `_session_id` cookie of one of this site's sessions, and no
    /// signature of the file (HTTP 403).
    #[error("you must be signed in to download files")]
    NotSignedIn,
    /// No such attachment, or one without a stored file (HTTP 400).
    #[error("attachment {0} doesn't exist or has no file")]
    NoSuchAttachment(i64),
}

/// What kind of upload a form is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// `/upload/upload_file`: the file goes into `field_name`, if given.
    File,
    /// `/upload/publish_thumbnail`: the file becomes the entity's thumbnail.
    Thumbnail,
}

/// An upload form, read.
#[derive(Debug, Clone)]
pub struct UploadForm {
    pub auth: Auth,
    pub entity_type: String,
    pub entity_id: i64,
    /// The url (or, for thumbnails, image) field the file goes into.
    pub field_name: Option<String>,
    pub display_name: Option<String>,
    pub file: StoredFile,
}

/// The auth keys a form may carry, as `_auth_params` sends them.
const AUTH_KEYS: [&str; 8] = [
    "script_name",
    "script_key",
    "user_login",
    "user_password",
    "auth_token",
    "session_token",
    "sudo_as_login",
    "session_uuid",
];

/// The name of the file part of each kind of form.
fn file_part(kind: UploadKind) -> &'static str {
    match kind {
        UploadKind::File => "file",
        UploadKind::Thumbnail => "thumb_image",
    }
}

impl UploadForm {
    /// Reads the parts of an upload form.
    pub fn from_parts(kind: UploadKind, parts: Vec<Part>) -> Result<UploadForm, UploadError> {
        let mut auth = Map::new();
        let mut text = std::collections::HashMap::new();
        let mut file = None;
        let file_name = file_part(kind);
        for part in parts {
            if part.name == file_name && part.filename.is_some() {
                file = Some(part);
            } else if AUTH_KEYS.contains(&part.name.as_str()) {
                auth.insert(part.name.clone(), Value::String(part.text()));
            } else {
                text.insert(part.name.clone(), part.text());
            }
        }
        let auth: Auth = serde_json::from_value(Value::Object(auth))
            .map_err(|e| UploadError::Refused(format!("unreadable credentials: {e}")))?;
        let entity_type = text
            .remove("entity_type")
            .filter(|t| !t.is_empty())
            .ok_or(UploadError::Missing("entity_type"))?;
        let id_text = text
            .remove("entity_id")
            .ok_or(UploadError::Missing("entity_id"))?;
        let entity_id = id_text
            .trim()
            .parse::<i64>()
            .map_err(|_| UploadError::BadId(id_text.clone()))?;
        let file = file.ok_or(UploadError::Missing(file_name))?;
        let filename = file.filename.clone().unwrap_or_default();
        let field_name = match kind {
            UploadKind::File => text.remove("field_name").filter(|f| !f.is_empty()),
            UploadKind::Thumbnail => {
                let filmstrip = text
                    .get("filmstrip")
                    .is_some_and(|f| f.eq_ignore_ascii_case("true") || f == "1");
                Some(
                    if filmstrip {
                        "filmstrip_image"
                    } else {
                        "image"
                    }
                    .to_string(),
                )
            }
        };
        Ok(UploadForm {
            auth,
            entity_type,
            entity_id,
            field_name,
            display_name: text.remove("display_name").filter(|d| !d.is_empty()),
            file: StoredFile {
                content_type: file
                    .content_type
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "application/octet-stream".into()),
                filename,
                data: file.data,
                signature: crate::files::new_signature(),
            },
        })
    }
}

/// The download URL of an attachment on a site reached at `base_url`.
pub fn download_url(base_url: &str, id: i64) -> String {
    format!(
        "{}/file_serve/attachment/{id}",
        base_url.trim_end_matches('/')
    )
}

/// The download URL with the file's signature, which needs no session.
pub fn signed_url(base_url: &str, id: i64, signature: &str) -> String {
    format!("{}?signature={signature}", download_url(base_url, id))
}

/// The value a url field holds for an uploaded file.
pub fn attachment_value(base_url: &str, id: i64, file: &StoredFile, name: &str) -> Value {
    json!({
        "url": signed_url(base_url, id, &file.signature),
        "name": name,
        "content_type": file.content_type,
        "link_type": "upload",
        "type": "Attachment",
        "id": id,
    })
}

fn fault(message: String) -> EngineError {
    EngineError::Fault(Fault::bad_request(message))
}

impl Site {
    /// Carries out an upload form from a caller who reached the site at
    /// `base_url`; returns the new Attachment's id.
    pub fn upload(
        &self,
        kind: UploadKind,
        form: UploadForm,
        base_url: &str,
    ) -> Result<i64, UploadError> {
        let caller = self.caller_for(Some(&form.auth))?;
        let catalog = self.engine.catalog();
        let (entity_type, entity_id) = (form.entity_type.as_str(), form.entity_id);
        let entity = catalog.schema.entity(entity_type).ok_or_else(|| {
            UploadError::Refused(format!("entity type {entity_type} doesn't exist"))
        })?;
        let attachments = catalog
            .schema
            .entity("Attachment")
            .ok_or_else(|| UploadError::Refused("this site has no Attachment entity".into()))?;
        if let Some(field) = &form.field_name {
            let wanted = match kind {
                UploadKind::File => DataType::Url,
                UploadKind::Thumbnail => DataType::Image,
            };
            match entity.field(field) {
                Some(f) if f.data_type == wanted => {}
                Some(_) => {
                    return Err(UploadError::Refused(format!(
                        "{entity_type}.{field} is not a file/link field"
                    )))
                }
                None => {
                    return Err(UploadError::Refused(format!(
                        "{entity_type}.{field} doesn't exist"
                    )))
                }
            }
        }
        let stored = |field: &str| {
            attachments.field(field).is_some()
                && catalog
                    .layout
                    .table("Attachment")
                    .and_then(|t| t.field(field))
                    .is_some()
        };
        let file = &form.file;
        let display_name = form
            .display_name
            .clone()
            .unwrap_or_else(|| file.filename.clone());
        let links_entity = attachments
            .field("attachment_links")
            .is_some_and(|f| f.valid_types.iter().any(|t| t == entity_type));
        let extension = file
            .filename
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase());
        let site_fields = |id: i64| {
            let mut fields = vec![(
                "this_file".to_string(),
                attachment_value(base_url, id, file, &display_name),
            )];
            fields.push(("filename".into(), json!(file.filename)));
            fields.push(("file_size".into(), json!(file.data.len())));
            if let Some(ext) = &extension {
                fields.push(("file_extension".into(), json!(ext)));
            }
            fields.retain(|(f, _)| stored(f));
            fields
        };
        let id = self.write(&caller, "create", |tx| {
            let target = tx
                .active_record(entity_type, entity_id)?
                .ok_or_else(|| fault(format!("{entity_type} {entity_id} doesn't exist")))?;
            let mut fields = Vec::new();
            if stored("display_name") {
                fields.push(("display_name".to_string(), json!(display_name)));
            }
            if links_entity && stored("attachment_links") {
                fields.push((
                    "attachment_links".into(),
                    json!([{"type": entity_type, "id": entity_id}]),
                ));
            }
            let project = if entity_type == "Project" {
                Some(json!({"type": "Project", "id": entity_id}))
            } else {
                target
                    .get("project")
                    .filter(|p| p.is_object())
                    .map(|p| json!({"type": p["type"], "id": p["id"]}))
            };
            if let (Some(project), true) = (project, stored("project")) {
                fields.push(("project".into(), project));
            }
            if kind == UploadKind::Thumbnail && stored("sg_type") {
                fields.push(("sg_type".into(), json!("Thumbnail")));
            }
            tx.method = "create";
            let created = tx.create_by_site("Attachment", &fields, &site_fields, &[])?;
            let id = created["id"]
                .as_i64()
                .ok_or_else(|| fault("the new Attachment has no id".into()))?;
            if let Some(field) = &form.field_name {
                let value = match kind {
                    UploadKind::File => attachment_value(base_url, id, file, &display_name),
                    UploadKind::Thumbnail => json!(signed_url(base_url, id, &file.signature)),
                };
                tx.method = "update";
                tx.update(
                    entity_type,
                    entity_id,
                    &[FieldWrite {
                        field: field.clone(),
                        value,
                        mode: UpdateMode::Set,
                    }],
                )?;
            }
            Ok(id)
        })?;
        self.files.put(id, form.file);
        Ok(id)
    }

    /// The file of an attachment, for the holder of session `token` or of
    /// the file's `signature`.
    pub fn download(
        &self,
        token: Option<&str>,
        signature: Option<&str>,
        id: i64,
    ) -> Result<Arc<StoredFile>, DownloadError> {
        let file = self.files.get(id);
        if token.and_then(|t| self.session_caller(t)).is_some() {
            return file.ok_or(DownloadError::NoSuchAttachment(id));
        }
        match (file, signature) {
            (Some(file), Some(given)) if file.signature == given => Ok(file),
            _ => Err(DownloadError::NotSignedIn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    fn part(name: &str, value: &str) -> Part {
        Part {
            name: name.into(),
            filename: None,
            content_type: None,
            data: Bytes::from(value.to_string()),
        }
    }

    fn file(name: &str) -> Part {
        Part {
            name: name.into(),
            filename: Some("t.png".into()),
            content_type: Some("image/png".into()),
            data: Bytes::from_static(b"png"),
        }
    }

    #[test]
    fn reads_forms_as_the_client_sends_them() {
        let form = UploadForm::from_parts(
            UploadKind::File,
            vec![
                part("entity_type", "Version"),
                part("entity_id", "12"),
                part("script_name", "s"),
                part("script_key", "k"),
                part("reject_if_expired", "True"),
                part("field_name", "sg_uploaded_movie"),
                file("file"),
            ],
        )
        .unwrap();
        assert_eq!((form.entity_type.as_str(), form.entity_id), ("Version", 12));
        assert_eq!(form.auth.script_key.as_deref(), Some("k"));
        assert_eq!(form.field_name.as_deref(), Some("sg_uploaded_movie"));
        assert_eq!(form.display_name, None);
        assert_eq!(form.file.content_type, "image/png");

        let thumb = UploadForm::from_parts(
            UploadKind::Thumbnail,
            vec![
                part("entity_type", "Shot"),
                part("entity_id", "3"),
                part("filmstrip", "True"),
                file("thumb_image"),
            ],
        )
        .unwrap();
        assert_eq!(thumb.field_name.as_deref(), Some("filmstrip_image"));

        let missing = UploadForm::from_parts(UploadKind::File, vec![part("entity_type", "Shot")]);
        assert!(matches!(missing, Err(UploadError::Missing("entity_id"))));
        let bad_id = UploadForm::from_parts(
            UploadKind::File,
            vec![
                part("entity_type", "Shot"),
                part("entity_id", "x"),
                file("file"),
            ],
        );
        assert!(matches!(bad_id, Err(UploadError::BadId(_))));
    }

    #[test]
    fn links_have_the_sites_shape_with_a_signature() {
        let file = StoredFile {
            filename: "a.mov".into(),
            content_type: "video/quicktime".into(),
            data: Bytes::new(),
            signature: "ab".into(),
        };
        assert_eq!(
            attachment_value("http://h:1/", 5, &file, "A"),
            json!({"url": "http://h:1/file_serve/attachment/5?signature=ab", "name": "A",
                   "content_type": "video/quicktime", "link_type": "upload",
                   "type": "Attachment", "id": 5})
        );
    }
}
