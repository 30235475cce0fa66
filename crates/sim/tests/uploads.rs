//! Uploads and downloads on the simulated site over real HTTP, sent exactly
//! as the official Python client sends them: a multipart form to
//! `/upload/upload_file` (and `/upload/publish_thumbnail`), then
//! `GET /file_serve/attachment/<id>` with the `_session_id` cookie.

mod support;

use serde_json::{json, Value};

use sg_protocol::Auth;
use sg_sim::{EventFaults, ServerOptions};
use support::{
    call, describe, events_after, find, last_event_id, meta, start_with, TestSite, KEY, PASSWORD,
    SCRIPT, USER,
};

const VERSION_ID: i64 = 7;

/// The built-in schema with one Project and one Version in it.
async fn start(max_body_bytes: usize) -> TestSite {
    start_with(
        sg_sim::builtin::schema(),
        json!({
            "Project": [{"id": 1, "name": "Demo"}],
            "Version": [{"id": VERSION_ID, "code": "v001", "project": {"type": "Project", "id": 1}}],
        }),
        EventFaults::default(),
        ServerOptions {
            max_body_bytes,
            ..ServerOptions::default()
        },
    )
    .await
}

/// A form as `FormPostHandler.encode` writes it: text fields, then files
/// with `Content-Type` and `Content-Length` part headers.
fn form(fields: &[(&str, &str)], file: Option<(&str, &str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "6f1d0c2e-5a3b-4c1e-9d8f-0123456789ab";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, filename, content_type, data)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                 Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Posts a form; returns the HTTP status and the reply text.
async fn post_form(url: &str, path: &str, form: (String, Vec<u8>)) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", form.0)
        .body(form.1)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.text().await.expect("reply text"))
}

/// An upload of `data` to the Version's `sg_uploaded_movie`, authenticated by `auth`.
async fn upload(site: &TestSite, auth: &[(&str, &str)], field: &str, data: &[u8]) -> (u16, String) {
    let mut fields = vec![("entity_type", "Version"), ("entity_id", "7")];
    fields.extend_from_slice(auth);
    fields.push(("field_name", field));
    fields.push(("display_name", "Latest QT"));
    post_form(
        &site.url,
        "/upload/upload_file",
        form(
            &fields,
            Some(("file", "take 1.mov", "video/quicktime", data)),
        ),
    )
    .await
}

/// The attachment id of a `1:<id>\n` reply, parsed as the client parses it.
fn attachment_id(reply: &str) -> i64 {
    assert!(reply.starts_with('1'), "upload refused: {reply}");
    reply
        .split_once(':')
        .and_then(|(_, rest)| rest.split('\n').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no attachment id in {reply:?}"))
}

async fn download(url: &str, id: i64, cookie: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{url}/file_serve/attachment/{id}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("get")
}

async fn session_token(site: &TestSite) -> String {
    let reply = call(&site.client(), "get_session_token", Value::Null).await;
    reply["session_id"].as_str().expect("a token").to_string()
}

/// Text fields of a form.
type Form<'a> = Vec<(&'a str, &'a str)>;

const SCRIPT_AUTH: [(&str, &str); 2] = [("script_name", SCRIPT), ("script_key", KEY)];

/// An upload creates the Attachment, links it in the url field, logs a
/// create and an update, and the bytes come back to a signed-in caller.
#[tokio::test]
async fn upload_links_the_file_logs_events_and_downloads() {
    let site = start(1 << 20).await;
    let c = site.client();
    let before = last_event_id(&c).await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (status, reply) = upload(&site, &SCRIPT_AUTH, "sg_uploaded_movie", &data).await;
    assert_eq!(status, 200);
    let id = attachment_id(&reply);
    assert_eq!(reply, format!("1:{id}\n"));

    let version = find(&c, "Version", VERSION_ID, &["sg_uploaded_movie"])
        .await
        .expect("the Version");
    let plain = format!("{}/file_serve/attachment/{id}", site.url);
    let url = version["sg_uploaded_movie"]["url"]
        .as_str()
        .expect("a url")
        .to_string();
    let signature = url
        .strip_prefix(&format!("{plain}?signature="))
        .unwrap_or_else(|| panic!("{url} is not a signed link to {plain}"));
    assert_eq!(signature.len(), 32);
    let link = json!({"url": url, "name": "Latest QT", "content_type": "video/quicktime",
                      "link_type": "upload", "type": "Attachment", "id": id});
    assert_eq!(version["sg_uploaded_movie"], link);
    let attachment = find(
        &c,
        "Attachment",
        id,
        &[
            "this_file",
            "filename",
            "file_size",
            "file_extension",
            "display_name",
            "attachment_links",
            "project",
            "created_by",
        ],
    )
    .await
    .expect("the Attachment");
    assert_eq!(attachment["this_file"], link);
    assert_eq!(attachment["filename"], json!("take 1.mov"));
    assert_eq!(attachment["file_size"], json!(data.len()));
    assert_eq!(attachment["file_extension"], json!("mov"));
    assert_eq!(attachment["display_name"], json!("Latest QT"));
    assert_eq!(attachment["attachment_links"][0]["type"], json!("Version"));
    assert_eq!(attachment["attachment_links"][0]["id"], json!(VERSION_ID));
    assert_eq!(attachment["project"]["id"], json!(1));
    assert_eq!(attachment["created_by"]["type"], json!("ApiUser"));

    let rows = events_after(&c, before).await;
    let kinds: Vec<(String, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["event_type"].as_str().unwrap_or("").to_string(),
                r["attribute_name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds[0],
        ("Shotgun_Attachment_New".into(), Value::Null),
        "{}",
        describe(&rows)
    );
    for field in [
        "this_file",
        "filename",
        "file_size",
        "display_name",
        "attachment_links",
        "project",
    ] {
        let row = rows
            .iter()
            .find(|r| {
                r["event_type"] == "Shotgun_Attachment_Change" && r["attribute_name"] == field
            })
            .unwrap_or_else(|| panic!("no change row for {field}:\n{}", describe(&rows)));
        assert_eq!(meta(row)["in_create"], json!(true));
        assert_eq!(row["entity"]["id"], json!(id));
    }
    let update = rows
        .iter()
        .find(|r| r["event_type"] == "Shotgun_Version_Change")
        .unwrap_or_else(|| panic!("no Version change row:\n{}", describe(&rows)));
    assert_eq!(update["attribute_name"], json!("sg_uploaded_movie"));
    assert_eq!(meta(update)["old_value"], Value::Null);
    assert_eq!(meta(update)["new_value"], link);
    assert_eq!(update["project"]["id"], json!(1));

    let token = session_token(&site).await;
    let got = download(
        &site.url,
        id,
        Some(&format!("other=1; _session_id={token}")),
    )
    .await;
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.headers()["content-type"], "video/quicktime");
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), &data[..]);

    for cookie in [None, Some("_session_id=not-a-session".to_string())] {
        let refused = download(&site.url, id, cookie.as_deref()).await;
        assert_eq!(refused.status().as_u16(), 403, "cookie {cookie:?}");
    }
    let missing = download(&site.url, id + 100, Some(&format!("_session_id={token}"))).await;
    assert_eq!(missing.status().as_u16(), 400);

    // The signed link needs no session; a wrong signature is refused.
    let signed = reqwest::get(&url).await.expect("get");
    assert_eq!(signed.status().as_u16(), 200);
    assert_eq!(signed.bytes().await.expect("bytes").as_ref(), &data[..]);
    // Another first byte, whatever the real one is.
    let forged_byte = if signature.starts_with("00") {
        "01"
    } else {
        "00"
    };
    let forged = reqwest::get(format!(
        "{plain}?signature={forged_byte}{}",
        &signature[2..]
    ))
    .await
    .expect("get");
    assert_eq!(forged.status().as_u16(), 403);
    let elsewhere = reqwest::get(format!(
        "{}/file_serve/attachment/{}?signature={signature}",
        site.url,
        id + 100
    ))
    .await
    .expect("get");
    assert_eq!(elsewhere.status().as_u16(), 403);
}

/// Bad credentials, a missing entity, and fields that are not url fields
/// are refused with a reply starting with `0`, and nothing is created.
#[tokio::test]
async fn refuses_bad_uploads_and_creates_nothing() {
    let site = start(1 << 20).await;
    let c = site.client();
    let before = last_event_id(&c).await;
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            vec![("script_name", SCRIPT), ("script_key", "wrong")],
            "sg_uploaded_movie",
            "authenticate",
        ),
        (vec![], "sg_uploaded_movie", "authentication"),
        (
            vec![("session_token", "nope")],
            "sg_uploaded_movie",
            "session",
        ),
        (SCRIPT_AUTH.to_vec(), "code", "not a file/link field"),
        (SCRIPT_AUTH.to_vec(), "sg_no_such_field", "doesn't exist"),
    ];
    for (auth, field, why) in cases {
        let (status, reply) = upload(&site, &auth, field, b"data").await;
        assert_eq!(status, 200);
        assert!(
            reply.starts_with("0\n") && reply.contains(why),
            "{auth:?} {field}: {reply:?}"
        );
    }
    let gone = form(
        &[
            ("entity_type", "Version"),
            ("entity_id", "999"),
            ("script_name", SCRIPT),
            ("script_key", KEY),
        ],
        Some(("file", "a.txt", "text/plain", b"x")),
    );
    let (_, reply) = post_form(&site.url, "/upload/upload_file", gone).await;
    assert!(
        reply.starts_with("0\n") && reply.contains("Version 999 doesn't exist"),
        "{reply:?}"
    );
    let no_file = form(
        &[
            ("entity_type", "Version"),
            ("entity_id", "7"),
            ("script_name", SCRIPT),
            ("script_key", KEY),
        ],
        None,
    );
    let (_, reply) = post_form(&site.url, "/upload/upload_file", no_file).await;
    assert!(
        reply.starts_with("0\n") && reply.contains("'file'"),
        "{reply:?}"
    );
    let (_, reply) = post_form(
        &site.url,
        "/upload/upload_file",
        ("text/plain".into(), b"x".to_vec()),
    )
    .await;
    assert!(reply.starts_with("0\n"), "{reply:?}");

    assert!(find(&c, "Attachment", 1, &["id"]).await.is_none());
    assert_eq!(support::count(&c, "Attachment", "active").await, 0);
    assert_eq!(
        support::get(&c, "Version", VERSION_ID, "sg_uploaded_movie").await,
        Value::Null
    );
    assert!(events_after(&c, before).await.is_empty());
}

/// A user's login and password, and a session token, work as form fields too;
/// the user's upload is logged as the user's.
#[tokio::test]
async fn users_and_sessions_can_upload() {
    let site = start(1 << 20).await;
    let (_, reply) = upload(
        &site,
        &[("user_login", USER), ("user_password", PASSWORD)],
        "sg_uploaded_movie",
        b"one",
    )
    .await;
    let by_user = attachment_id(&reply);
    let token = session_token(&site).await;
    let (_, reply) = upload(
        &site,
        &[("session_token", &token), ("reject_if_expired", "True")],
        "sg_uploaded_movie",
        b"two",
    )
    .await;
    let by_session = attachment_id(&reply);
    assert_eq!(by_session, by_user + 1);
    let c = site.client_as(Auth::user(USER, PASSWORD));
    let attachment = find(&c, "Attachment", by_user, &["created_by"])
        .await
        .expect("attachment");
    assert_eq!(attachment["created_by"]["type"], json!("HumanUser"));
    let link = support::get(&c, "Version", VERSION_ID, "sg_uploaded_movie").await;
    assert_eq!(
        link["id"],
        json!(by_session),
        "the second upload replaced the first"
    );
    let got = download(&site.url, by_user, Some(&format!("_session_id={token}"))).await;
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"one");
}

/// A thumbnail upload sets the entity's `image`.
#[tokio::test]
async fn publishes_thumbnails() {
    let site = start(1 << 20).await;
    let png = b"\x89PNG\r\n\x1a\nnot really";
    let thumb = form(
        &[
            ("entity_type", "Version"),
            ("entity_id", "7"),
            ("script_name", SCRIPT),
            ("script_key", KEY),
        ],
        Some(("thumb_image", "t.png", "image/png", png)),
    );
    let (_, reply) = post_form(&site.url, "/upload/publish_thumbnail", thumb).await;
    let id = attachment_id(&reply);
    let c = site.client();
    let image = support::get(&c, "Version", VERSION_ID, "image").await;
    let image = image.as_str().expect("an image url");
    assert!(
        image.starts_with(&format!(
            "{}/file_serve/attachment/{id}?signature=",
            site.url
        )),
        "{image}"
    );
    let signed = reqwest::get(image).await.expect("get");
    assert_eq!(signed.bytes().await.expect("bytes").as_ref(), png);
    let token = session_token(&site).await;
    let got = download(&site.url, id, Some(&format!("_session_id={token}"))).await;
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), png);
}

/// A 50 MB file goes up and comes back byte for byte, with a body limit above it;
/// a body over the limit is refused.
#[tokio::test]
async fn big_files_round_trip_within_the_body_limit() {
    let site = start(60 << 20).await;
    let data: Vec<u8> = (0..50u64 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, reply) = upload(&site, &SCRIPT_AUTH, "sg_uploaded_movie", &data).await;
    assert_eq!(status, 200);
    let id = attachment_id(&reply);
    let token = session_token(&site).await;
    let got = download(&site.url, id, Some(&format!("_session_id={token}"))).await;
    assert_eq!(
        got.headers()["content-length"],
        (data.len()).to_string().as_str()
    );
    let bytes = got.bytes().await.expect("bytes");
    assert!(bytes.as_ref() == &data[..], "the downloaded bytes differ");

    let too_big = vec![0u8; 61 << 20];
    let (_, reply) = upload(&site, &SCRIPT_AUTH, "sg_uploaded_movie", &too_big).await;
    assert!(!reply.starts_with('1'), "{reply:?}");
}
