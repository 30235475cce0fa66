"""File uploads and downloads through the official `shotgun_api3` client against
`shotgun-cache sim`.

A fresh simulated site is started for this module (the fixture schema, one Project and two
Versions, a free port) and stopped at teardown, so the uploads never touch the dataset the
other modules compare against.  The site reports ``s3_direct_uploads_enabled: false``, so
the unmodified client uses the legacy form upload (``POST /upload/upload_file``, and
``/upload/publish_thumbnail`` for thumbnails) and downloads with its ``_session_id``
cookie (``GET /file_serve/attachment/<id>``).  The client:

- uploads a small file and a 20 MB one into ``Version.sg_uploaded_movie`` and gets the new
  Attachment's id;
- reads the link back on the Version and the Attachment's own fields;
- downloads the same bytes (into memory and into a file) by the link;
- and, with its session token as the ``_session_id`` cookie, by the plain
  ``/file_serve/attachment/<id>`` URL.  The client itself never sends that cookie to a
  site on an explicit port (``http.cookiejar`` does not match its ``host:port`` cookie
  domain), so the links the site hands out carry the file's signature
  (``?signature=<hex>``), as hosted sites' signed storage URLs do, and a download by id
  alone fails with ``ShotgunFileDownloadError``;
- sees the event-log rows of the Attachment's create and of the Version's update;
- publishes a thumbnail into ``Version.image``;
- is refused for a bad script key, a missing Version and a field that is not a file field,
  and a download without a session gets HTTP 403.

Run it with ``bash tests/compat/run.sh tests/compat/test_uploads.py``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
import shotgun_api3

from conftest import SCRIPT_NAME, connect, start_sim

PROJECT = {"type": "Project", "id": 1}
DATASET = {
    "Project": [{"id": 1, "name": "Uploads Project"}],
    "Version": [
        {"id": 1, "code": "v001", "project": PROJECT},
        {"id": 2, "code": "v002", "project": PROJECT},
    ],
}


@pytest.fixture(scope="module")
def upload_site(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("uploads-sim"), DATASET)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def usg(upload_site):
    return connect(upload_site.url)


def write_file(path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def download_with_session(sg, url: str) -> bytes:
    """A download as the client means to make it: its session token in `_session_id`."""
    request = urllib.request.Request(url)
    request.add_header("Cookie", "_session_id=%s" % sg.get_session_token())
    with urllib.request.urlopen(request, timeout=60) as reply:
        return reply.read()


def last_event_id(sg) -> int:
    row = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
    return row["id"] if row else 0


def test_the_site_asks_for_form_uploads(usg):
    assert usg.server_info["s3_direct_uploads_enabled"] is False


@pytest.mark.parametrize("size", [1000, 20 * 1024 * 1024], ids=["small", "20MB"])
def test_upload_links_and_downloads_the_same_bytes(usg, upload_site, tmp_path, size):
    path = tmp_path / ("take_%d.mov" % size)
    data = write_file(path, size)
    before = last_event_id(usg)

    attachment_id = usg.upload("Version", 1, str(path), field_name="sg_uploaded_movie",
                               display_name="Take %d" % size)
    assert isinstance(attachment_id, int)

    version = usg.find_one("Version", [["id", "is", 1]], ["sg_uploaded_movie"])
    plain = "%s/file_serve/attachment/%d" % (upload_site.url, attachment_id)
    url = version["sg_uploaded_movie"]["url"]
    assert url.startswith(plain + "?signature="), url
    expected = {
        "url": url,
        "name": "Take %d" % size,
        "content_type": "video/quicktime",
        "link_type": "upload",
        "type": "Attachment",
        "id": attachment_id,
    }
    assert version["sg_uploaded_movie"] == expected

    attachment = usg.find_one("Attachment", [["id", "is", attachment_id]],
                              ["this_file", "filename", "file_size", "display_name",
                               "attachment_links", "project"])
    assert attachment["this_file"] == expected
    assert attachment["filename"] == path.name
    assert attachment["file_size"] == size
    assert attachment["display_name"] == "Take %d" % size
    assert [(l["type"], l["id"]) for l in attachment["attachment_links"]] == [("Version", 1)]
    assert attachment["project"]["id"] == 1

    assert usg.download_attachment(version["sg_uploaded_movie"]) == data
    out = tmp_path / "downloaded.mov"
    assert usg.download_attachment(attachment["this_file"], file_path=str(out)) == str(out)
    assert out.read_bytes() == data
    assert download_with_session(usg, plain) == data

    rows = usg.find("EventLogEntry", [["id", "greater_than", before]],
                    ["event_type", "attribute_name", "entity", "meta"],
                    order=[{"field_name": "id", "direction": "asc"}])
    kinds = [(r["event_type"], r["attribute_name"]) for r in rows]
    assert kinds[0] == ("Shotgun_Attachment_New", None), kinds
    assert ("Shotgun_Attachment_Change", "this_file") in kinds
    changes = [r for r in rows if r["event_type"] == "Shotgun_Version_Change"]
    assert [r["attribute_name"] for r in changes] == ["sg_uploaded_movie"], kinds
    assert changes[0]["meta"]["new_value"] == expected
    assert changes[0]["entity"]["id"] == 1


def test_upload_without_a_field_only_attaches(usg, tmp_path):
    path = tmp_path / "notes.txt"
    data = write_file(path, 321)
    attachment_id = usg.upload("Version", 2, str(path))
    attachment = usg.find_one("Attachment", [["id", "is", attachment_id]],
                              ["this_file", "display_name", "attachment_links"])
    assert attachment["display_name"] == "notes.txt"
    assert attachment["this_file"]["content_type"] == "text/plain"
    assert [(l["type"], l["id"]) for l in attachment["attachment_links"]] == [("Version", 2)]
    assert usg.find_one("Version", [["id", "is", 2]], ["sg_uploaded_movie"])["sg_uploaded_movie"] is None
    assert usg.download_attachment(attachment["this_file"]) == data


def test_upload_thumbnail_sets_the_image(usg, upload_site, tmp_path):
    path = tmp_path / "thumb.png"
    data = write_file(path, 2048)
    attachment_id = usg.upload_thumbnail("Version", 2, str(path))
    image = usg.find_one("Version", [["id", "is", 2]], ["image"])["image"]
    assert image.startswith("%s/file_serve/attachment/%d?signature=" % (upload_site.url, attachment_id))
    assert usg.download_attachment({"url": image}) == data


def test_refused_uploads(usg, upload_site, tmp_path):
    path = tmp_path / "refused.mov"
    write_file(path, 100)
    before = last_event_id(usg)
    bad = connect(upload_site.url, SCRIPT_NAME, "not-the-key")
    with pytest.raises(shotgun_api3.ShotgunError, match="Can't authenticate script"):
        bad.upload("Version", 1, str(path), field_name="sg_uploaded_movie")
    with pytest.raises(shotgun_api3.ShotgunError, match="Version 999 doesn't exist"):
        usg.upload("Version", 999, str(path), field_name="sg_uploaded_movie")
    with pytest.raises(shotgun_api3.ShotgunError, match="not a file/link field"):
        usg.upload("Version", 1, str(path), field_name="code")
    with pytest.raises(shotgun_api3.ShotgunError, match="doesn't exist"):
        usg.upload("Version", 1, str(path), field_name="sg_no_such_field")
    assert last_event_id(usg) == before


def test_download_needs_a_session(usg, upload_site, tmp_path):
    path = tmp_path / "private.mov"
    write_file(path, 100)
    attachment_id = usg.upload("Version", 1, str(path))
    url = "%s/file_serve/attachment/%d" % (upload_site.url, attachment_id)
    signed = usg.find_one("Attachment", [["id", "is", attachment_id]], ["this_file"])["this_file"]["url"]
    for cookie in (None, "_session_id=not-a-session"):
        request = urllib.request.Request(url)
        if cookie:
            request.add_header("Cookie", cookie)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403
    forged = signed[:-2] + ("00" if not signed.endswith("00") else "11")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=30)
    assert refused.value.code == 403
    # By id alone the client builds the plain URL and, on a port, sends no cookie.
    with pytest.raises(shotgun_api3.ShotgunFileDownloadError, match="403"):
        usg.download_attachment(attachment_id)
    with pytest.raises(urllib.error.HTTPError) as missing:
        download_with_session(usg, "%s/file_serve/attachment/%d" % (upload_site.url, attachment_id + 1000))
    assert missing.value.code == 400
