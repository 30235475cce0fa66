"""Writes through the official `shotgun_api3` client against `shotgun-cache sim`.

A fresh simulated site is started for this module (its own small dataset, a free port, no
event noise) and stopped at teardown, whatever happened.  The unmodified client then:

- creates, updates, clears, deletes and revives records for every writable data type of
  the fixture schema (text, number, float, checkbox, date, date_time, list, status_list,
  entity, multi_entity, url, serializable, color, entity_type, duration), including
  ``multi_entity_update_modes`` set / add / remove;
- runs ``batch`` (results in request order, and a failing item rolling everything back);
- is refused (``shotgun_api3.Fault``) for values of the wrong type, values outside
  valid_values, links to types outside valid_types or to missing records, unknown fields
  and the site's own fields, and a refused write changes nothing and logs nothing;
- sees the site keep ``created_*``/``updated_*`` and inverse links (Shot.assets <->
  Asset.shots, Task.entity <-> Shot.tasks) in step;
- edits the schema (``schema_field_create`` / ``_update`` / ``_delete``);
- authenticates with a script key, a login and password, and a session token, and gets
  ``AuthenticationFault`` for bad credentials;
- reads back the EventLogEntry rows of its writes (New / Change / Retirement / Revival and
  back-reference rows), and none for a script whose "Generate Events" switch is off.

Run it with ``bash tests/compat/run.sh -k writes``.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import time
from pathlib import Path

import pytest
import shotgun_api3

from conftest import SCRIPT_KEY, SCRIPT_NAME, STARTUP_TIMEOUT, SimServer, binary_path

UTC = _dt.timezone.utc

FIXTURES = (Path(__file__).resolve().parent / ".." / "fixtures").resolve()
FIELDS_JSON = FIXTURES / "site-schema.fields.json"
ENTITIES_JSON = FIXTURES / "site-schema.entities.json"

QUIET_SCRIPT = ("quiet_script", "quiet-key-42")  # "Generate Events" off
USER = ("artist", "pa55word")

PROJECT = {"type": "Project", "id": 1}


def link(entity_type: str, entity_id: int) -> dict:
    return {"type": entity_type, "id": entity_id}


# The site's starting records: few, and with no link that has an inverse, so that the
# dataset is consistent without the site mirroring anything at load time.
DATASET = {
    "Project": [{"id": 1, "name": "Writes Project"}, {"id": 2, "name": "Other Project"}],
    "Sequence": [
        {"id": 1, "code": "SEQ_A", "project": PROJECT},
        {"id": 2, "code": "SEQ_B", "project": PROJECT},
    ],
    "Shot": [
        {"id": 1, "code": "sh010", "project": PROJECT, "sg_status_list": "wtg"},
        {"id": 2, "code": "sh020", "project": PROJECT, "sg_status_list": "ip"},
    ],
    "Asset": [
        {"id": 1, "code": "hero", "project": PROJECT, "sg_asset_type": "Character"},
        {"id": 2, "code": "car", "project": PROJECT, "sg_asset_type": "Vehicle"},
        {"id": 3, "code": "tree", "project": PROJECT, "sg_asset_type": "Prop"},
    ],
    "Step": [{"id": 1, "code": "Comp", "entity_type": "Shot"}],
    "HumanUser": [{"id": 1, "login": "someone_else", "name": "Someone Else"}],
}


# -- the site -----------------------------------------------------------------------------


class WriteSite:
    """A `shotgun-cache sim` process for this module, and clients for it."""

    def __init__(self, server: SimServer):
        self.server = server
        self.url = server.url

    def client(self, script: str = SCRIPT_NAME, key: str = SCRIPT_KEY) -> shotgun_api3.Shotgun:
        return _ready(shotgun_api3.Shotgun(self.url + "/", script_name=script, api_key=key, connect=False))

    def user_client(self, login: str = USER[0], password: str = USER[1]) -> shotgun_api3.Shotgun:
        return _ready(shotgun_api3.Shotgun(self.url + "/", login=login, password=password, connect=False))

    def token_client(self, token: str) -> shotgun_api3.Shotgun:
        return _ready(shotgun_api3.Shotgun(self.url + "/", session_token=token, connect=False))


def _ready(sg: shotgun_api3.Shotgun) -> shotgun_api3.Shotgun:
    # A hung server should fail the test rather than hang the suite.
    sg.config.timeout_secs = 60
    sg.server_caps  # the `info` call: no credentials involved
    return sg


def start_write_site(tmp_dir: Path) -> SimServer:
    data_path = tmp_dir / "writes-dataset.json"
    data_path.write_text(json.dumps(DATASET), encoding="utf-8")
    argv = [str(binary_path()), "sim", "--listen", "127.0.0.1:0",
            "--schema", str(FIELDS_JSON), "--entity-schema", str(ENTITIES_JSON),
            "--load", str(data_path),
            "--script", "%s:%s" % (SCRIPT_NAME, SCRIPT_KEY),
            "--script", "%s:%s:no-events" % QUIET_SCRIPT,
            "--user", "%s:%s" % USER,
            "--noise-every", "0"]
    server = SimServer(argv, tmp_dir / "writes-sim.stderr.log")
    server.wait_ready(STARTUP_TIMEOUT)
    return server


@pytest.fixture(scope="module")
def wsite(tmp_path_factory):
    server = start_write_site(tmp_path_factory.mktemp("writes-sim"))
    try:
        yield WriteSite(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sg(wsite):
    return wsite.client()


@pytest.fixture(autouse=True)
def _write_site_still_running(request):
    """After each test, fail loudly if this module's server has died."""
    yield
    if "wsite" in request.fixturenames:
        site = request.getfixturevalue("wsite")
        assert site.server.alive(), "shotgun-cache sim exited (%s); stderr:\n%s" % (
            site.server.proc.poll(), site.server.stderr_tail())


# -- helpers ------------------------------------------------------------------------------

_counter = itertools.count(1)


def uniq(prefix: str) -> str:
    return "%s_%03d" % (prefix, next(_counter))


NAME_FIELD = {"Shot": "code", "Asset": "code", "Version": "code", "Sequence": "code",
              "Step": "code", "Task": "content", "Project": "name"}


def fetch(sg, entity_type, entity_id, fields, retired=False):
    found = sg.find(entity_type, [["id", "is", entity_id]], fields, retired_only=retired)
    assert len(found) <= 1
    return found[0] if found else None


def last_event_id(sg) -> int:
    row = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
    return row["id"] if row else 0


EVENT_FIELDS = ["event_type", "attribute_name", "entity", "meta", "user", "project", "created_at",
                "session_uuid"]


def events_after(sg, after_id: int):
    return sg.find("EventLogEntry", [["id", "greater_than", after_id]], EVENT_FIELDS,
                   order=[{"field_name": "id", "direction": "asc"}])


def bare(value):
    """Links as (type, id) pairs, lists of links as lists of pairs; other values as they are."""
    if isinstance(value, dict) and "type" in value and "id" in value:
        return (value["type"], value["id"])
    if isinstance(value, list) and all(isinstance(v, dict) and "type" in v for v in value):
        return [bare(v) for v in value]
    return value


def api_user_id(sg, script_name: str) -> int:
    row = sg.find_one("ApiUser", [["firstname", "is", script_name]], ["id"])
    assert row, "the site has no ApiUser for script %r" % script_name
    return row["id"]


def human_user_id(sg, login: str) -> int:
    row = sg.find_one("HumanUser", [["login", "is", login]], ["id"])
    assert row, "the site has no HumanUser for login %r" % login
    return row["id"]


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(UTC)


def assert_recent(value, slack=_dt.timedelta(minutes=5)):
    assert isinstance(value, _dt.datetime) and value.tzinfo is not None, value
    assert abs(value - now_utc()) < slack, "%r is not close to now (%r)" % (value, now_utc())


def new_shot(sg, **fields):
    data = {"code": uniq("shot"), "project": PROJECT}
    data.update(fields)
    return sg.create("Shot", data)


def new_asset(sg, **fields):
    data = {"code": uniq("asset"), "project": PROJECT}
    data.update(fields)
    return sg.create("Asset", data)


# -- round trips of every writable data type ----------------------------------------------

TZ_INDIA = _dt.timezone(_dt.timedelta(hours=5, minutes=30))

# (id, entity type, field, first value, second value, value read back after None)
ROUND_TRIPS = [
    ("text", "Shot", "description", "héllo <b> & \"quotes\" 日本語 🎬", "line one\nline two", None),
    ("number", "Shot", "sg_cut_in", 1001, -7, None),
    ("number-zero", "Shot", "sg_cut_out", 0, 123456789, None),
    ("float", "Version", "sg_frames_aspect_ratio", 1.85, 2.39, None),
    ("checkbox", "Version", "flagged", True, False, False),
    ("date-object", "Task", "due_date", _dt.date(2024, 5, 6), _dt.date(2025, 12, 31), None),
    ("date-string", "Task", "start_date", "2024-02-29", "1999-01-01", None),
    ("date_time", "Version", "media_center_import_time",
     _dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
     _dt.datetime(2023, 12, 31, 23, 30, 0, tzinfo=TZ_INDIA), None),
    ("list", "Asset", "sg_asset_type", "Prop", "Matte Painting", None),
    ("status_list", "Shot", "sg_status_list", "ip", "fin", None),
    ("entity", "Shot", "sg_sequence", link("Sequence", 1), link("Sequence", 2), None),
    ("entity-polymorphic", "Version", "entity", link("Shot", 1), link("Asset", 2), None),
    ("multi_entity", "Shot", "assets", [link("Asset", 1)], [link("Asset", 2), link("Asset", 3)], []),
    ("url", "Version", "sg_uploaded_movie",
     {"url": "https://example.com/movies/a.mov", "name": "a.mov", "link_type": "web",
      "content_type": "video/quicktime"},
     {"url": "https://example.com/b", "name": "b", "link_type": "web"}, None),
    ("serializable", "Task", "splits",
     {"splits": [{"start": 1, "end": 5}], "note": "x < y", "nested": {"ok": True, "none": None}},
     [1, 2.5, "three", [4], {"five": 5}], None),
    ("color", "Task", "color", "pipeline_step", "255,128,0", None),
    ("entity_type", "Step", "entity_type", "Asset", "CustomEntity01", None),
    ("duration", "Task", "duration", 480, 0, None),
]


def expected_wire(value):
    """What the client gives back for a value it sent."""
    if isinstance(value, _dt.datetime):
        return value  # an aware datetime compares equal across time zones
    if isinstance(value, _dt.date):
        return value.isoformat()  # dates come back as strings
    return value


def assert_same_value(field, got, sent):
    expected = expected_wire(sent)
    if isinstance(expected, _dt.datetime):
        assert isinstance(got, _dt.datetime), "%s: %r is not a datetime" % (field, got)
        assert got.tzinfo is not None, "%s: %r is naive" % (field, got)
        assert got == expected, "%s: %r != %r" % (field, got, expected)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected), "%s: %r != %r" % (field, got, expected)
    elif isinstance(expected, dict) and "type" in expected and "id" in expected:
        assert bare(got) == bare(expected), "%s: %r != %r" % (field, got, expected)
        assert isinstance(got.get("name"), str) and got["name"], "%s: link without a name: %r" % (field, got)
    elif isinstance(expected, list) and all(isinstance(v, dict) and "type" in v for v in expected):
        assert sorted(bare(got)) == sorted(bare(expected)), "%s: %r != %r" % (field, got, expected)
    elif isinstance(expected, dict) and "url" in expected:
        # A url dict: what was sent comes back (a site may add keys).
        assert isinstance(got, dict), "%s: %r" % (field, got)
        assert {k: got.get(k) for k in expected} == expected, "%s: %r != %r" % (field, got, expected)
    else:
        assert got == expected and type(got) is type(expected), "%s: %r != %r" % (field, got, expected)


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_round_trip_create_update_clear(sg, case):
    _, entity_type, field, first, second, cleared = case
    name_field = NAME_FIELD[entity_type]
    name = uniq("rt")

    created = sg.create(entity_type, {name_field: name, field: first})
    assert created["type"] == entity_type and isinstance(created["id"], int)
    assert created[name_field] == name
    assert_same_value(field, created[field], first)
    record = fetch(sg, entity_type, created["id"], [name_field, field])
    assert record[name_field] == name
    assert_same_value(field, record[field], first)

    updated = sg.update(entity_type, created["id"], {field: second})
    assert updated["type"] == entity_type and updated["id"] == created["id"]
    assert_same_value(field, updated[field], second)
    assert_same_value(field, fetch(sg, entity_type, created["id"], [field])[field], second)

    sg.update(entity_type, created["id"], {field: None})
    assert fetch(sg, entity_type, created["id"], [field])[field] == cleared
    # The name was left alone by the updates.
    assert fetch(sg, entity_type, created["id"], [name_field])[name_field] == name


def test_date_time_goes_over_the_wire_as_utc(sg):
    """A non-UTC aware datetime is stored as the same instant (the client converts to UTC Z)."""
    when = _dt.datetime(2024, 1, 15, 9, 0, 0, tzinfo=TZ_INDIA)  # 03:30 UTC
    version = sg.create("Version", {"code": uniq("v"), "media_center_import_time": when})
    found = sg.find("Version", [["media_center_import_time", "is", _dt.datetime(2024, 1, 15, 3, 30, tzinfo=UTC)]],
                    ["media_center_import_time"])
    assert [v["id"] for v in found] == [version["id"]]
    assert found[0]["media_center_import_time"].astimezone(UTC) == _dt.datetime(2024, 1, 15, 3, 30, tzinfo=UTC)
    # The same value written as the wire string reads back as the same instant.
    sg.update("Version", version["id"], {"media_center_import_time": "2024-01-15T03:30:00Z"})
    assert fetch(sg, "Version", version["id"], ["media_center_import_time"])["media_center_import_time"] == when


def test_float_field_accepts_a_whole_number(sg):
    version = sg.create("Version", {"code": uniq("v"), "sg_frames_aspect_ratio": 2})
    got = fetch(sg, "Version", version["id"], ["sg_frames_aspect_ratio"])["sg_frames_aspect_ratio"]
    assert got == 2 and isinstance(got, float)


def test_create_return_fields_and_defaults(sg):
    code = uniq("shot")
    created = sg.create("Shot", {"code": code, "project": PROJECT},
                        return_fields=["sg_status_list", "description", "created_by"])
    assert created["code"] == code
    assert bare(created["project"]) == ("Project", 1) and created["project"]["name"] == "Writes Project"
    # Fields that were not set come back too when asked for, with the schema's defaults.
    assert created["sg_status_list"] == "wtg"
    assert "description" in created and created["description"] is None
    assert bare(created["created_by"]) == ("ApiUser", api_user_id(sg, SCRIPT_NAME))


def test_text_with_lt_round_trips(sg):
    """The client unescapes `&lt;`; the site must hand `<` back as `<` either way."""
    code = uniq("a<b>&c")
    shot = sg.create("Shot", {"code": code})
    assert shot["code"] == code
    assert fetch(sg, "Shot", shot["id"], ["code"])["code"] == code
    assert sg.find_one("Shot", [["code", "is", code]], ["code"])["id"] == shot["id"]


# -- multi_entity update modes -------------------------------------------------------------


def test_multi_entity_update_modes(sg):
    shot = new_shot(sg)
    a1, a2, a3 = link("Asset", 1), link("Asset", 2), link("Asset", 3)

    result = sg.update("Shot", shot["id"], {"assets": [a1, a2]})
    assert sorted(bare(result["assets"])) == [("Asset", 1), ("Asset", 2)]

    result = sg.update("Shot", shot["id"], {"assets": [a3, a1]}, multi_entity_update_modes={"assets": "add"})
    assert sorted(bare(result["assets"])) == [("Asset", 1), ("Asset", 2), ("Asset", 3)], \
        "add keeps what was there, appends the new link and does not duplicate a1"
    assert sorted(bare(fetch(sg, "Shot", shot["id"], ["assets"])["assets"])) == \
        [("Asset", 1), ("Asset", 2), ("Asset", 3)]

    result = sg.update("Shot", shot["id"], {"assets": [a2]}, multi_entity_update_modes={"assets": "remove"})
    assert sorted(bare(result["assets"])) == [("Asset", 1), ("Asset", 3)]

    # Removing a link that is not there changes nothing.
    result = sg.update("Shot", shot["id"], {"assets": [a2]}, multi_entity_update_modes={"assets": "remove"})
    assert sorted(bare(result["assets"])) == [("Asset", 1), ("Asset", 3)]

    result = sg.update("Shot", shot["id"], {"assets": [a2]}, multi_entity_update_modes={"assets": "set"})
    assert bare(result["assets"]) == [("Asset", 2)]
    assert bare(fetch(sg, "Shot", shot["id"], ["assets"])["assets"]) == [("Asset", 2)]

    assert all(isinstance(a.get("name"), str) for a in fetch(sg, "Shot", shot["id"], ["assets"])["assets"])


# -- inverse links ------------------------------------------------------------------------


def shot_ids(sg, asset_id):
    return sorted(s["id"] for s in fetch(sg, "Asset", asset_id, ["shots"])["shots"])


def asset_ids(sg, shot_id):
    return sorted(a["id"] for a in fetch(sg, "Shot", shot_id, ["assets"])["assets"])


def test_shot_assets_and_asset_shots_stay_in_step(sg):
    shot = new_shot(sg)
    a1, a2 = new_asset(sg), new_asset(sg)

    sg.update("Shot", shot["id"], {"assets": [a1, a2]})
    assert shot["id"] in shot_ids(sg, a1["id"]) and shot["id"] in shot_ids(sg, a2["id"])

    sg.update("Shot", shot["id"], {"assets": [a1]}, multi_entity_update_modes={"assets": "remove"})
    assert shot["id"] not in shot_ids(sg, a1["id"])
    assert shot["id"] in shot_ids(sg, a2["id"])

    # From the other side: Asset.shots writes Shot.assets.
    sg.update("Asset", a1["id"], {"shots": [shot]}, multi_entity_update_modes={"shots": "add"})
    assert asset_ids(sg, shot["id"]) == sorted([a1["id"], a2["id"]])
    sg.update("Asset", a2["id"], {"shots": []})
    assert asset_ids(sg, shot["id"]) == [a1["id"]]

    # A link made at creation is mirrored too.
    a3 = sg.create("Asset", {"code": uniq("asset"), "project": PROJECT, "shots": [shot]})
    assert asset_ids(sg, shot["id"]) == sorted([a1["id"], a3["id"]])


def task_ids(sg, entity_type, entity_id):
    return sorted(t["id"] for t in fetch(sg, entity_type, entity_id, ["tasks"])["tasks"])


def test_task_entity_and_shot_tasks_stay_in_step(sg):
    s1, s2 = new_shot(sg), new_shot(sg)
    task = sg.create("Task", {"content": uniq("task"), "entity": s1, "project": PROJECT})
    assert task_ids(sg, "Shot", s1["id"]) == [task["id"]]

    sg.update("Task", task["id"], {"entity": s2})
    assert task_ids(sg, "Shot", s1["id"]) == []
    assert task_ids(sg, "Shot", s2["id"]) == [task["id"]]

    # Shot.tasks writes Task.entity, and the task leaves its previous shot.
    sg.update("Shot", s1["id"], {"tasks": [task]}, multi_entity_update_modes={"tasks": "add"})
    assert bare(fetch(sg, "Task", task["id"], ["entity"])["entity"]) == ("Shot", s1["id"])
    assert task_ids(sg, "Shot", s2["id"]) == []

    sg.update("Shot", s1["id"], {"tasks": []})
    assert fetch(sg, "Task", task["id"], ["entity"])["entity"] is None

    sg.update("Task", task["id"], {"entity": s2})
    sg.update("Task", task["id"], {"entity": None})
    assert task_ids(sg, "Shot", s2["id"]) == []

    # Across types, from the Task side: Asset.tasks and Shot.tasks both follow.
    asset = new_asset(sg)
    sg.update("Task", task["id"], {"entity": asset})
    assert task_ids(sg, "Asset", asset["id"]) == [task["id"]]
    sg.update("Task", task["id"], {"entity": s1})
    assert task_ids(sg, "Asset", asset["id"]) == []
    assert task_ids(sg, "Shot", s1["id"]) == [task["id"]]


def test_shot_sequence_and_sequence_shots_stay_in_step(sg):
    seq1 = sg.create("Sequence", {"code": uniq("seq"), "project": PROJECT})
    seq2 = sg.create("Sequence", {"code": uniq("seq"), "project": PROJECT})
    shot = new_shot(sg, sg_sequence=seq1)
    seq_shots = lambda seq: sorted(s["id"] for s in fetch(sg, "Sequence", seq["id"], ["shots"])["shots"])
    assert seq_shots(seq1) == [shot["id"]]
    sg.update("Sequence", seq2["id"], {"shots": [shot]})
    assert bare(fetch(sg, "Shot", shot["id"], ["sg_sequence"])["sg_sequence"]) == ("Sequence", seq2["id"])
    assert seq_shots(seq1) == [] and seq_shots(seq2) == [shot["id"]]


def test_task_moved_from_asset_to_shot_through_shot_tasks_leaves_asset_tasks(sg):
    asset = new_asset(sg)
    shot = new_shot(sg)
    task = sg.create("Task", {"content": uniq("task"), "entity": asset, "project": PROJECT})
    assert task_ids(sg, "Asset", asset["id"]) == [task["id"]]
    sg.update("Shot", shot["id"], {"tasks": [task]}, multi_entity_update_modes={"tasks": "add"})
    assert bare(fetch(sg, "Task", task["id"], ["entity"])["entity"]) == ("Shot", shot["id"])
    assert task_ids(sg, "Asset", asset["id"]) == [], "Asset.tasks still lists a Task whose entity is now a Shot"


# -- audit fields -------------------------------------------------------------------------


def test_audit_fields_are_set_by_the_site(sg):
    audit = ["created_at", "updated_at", "created_by", "updated_by"]
    shot = sg.create("Shot", {"code": uniq("audit")}, return_fields=audit)
    me = ("ApiUser", api_user_id(sg, SCRIPT_NAME))
    assert_recent(shot["created_at"])
    assert shot["updated_at"] == shot["created_at"]
    assert bare(shot["created_by"]) == me and bare(shot["updated_by"]) == me

    time.sleep(1.1)  # the site's stamps have whole seconds
    sg.update("Shot", shot["id"], {"description": "touched"})
    after = fetch(sg, "Shot", shot["id"], audit)
    assert after["created_at"] == shot["created_at"], "created_at must not move"
    assert after["updated_at"] > shot["updated_at"], "updated_at must move on update"
    assert_recent(after["updated_at"])
    assert bare(after["created_by"]) == me and bare(after["updated_by"]) == me


def test_updated_by_follows_the_writer(wsite, sg):
    shot = sg.create("Shot", {"code": uniq("who")})
    user = wsite.user_client()
    user.update("Shot", shot["id"], {"description": "by a person"})
    after = fetch(sg, "Shot", shot["id"], ["created_by", "updated_by"])
    assert bare(after["created_by"]) == ("ApiUser", api_user_id(sg, SCRIPT_NAME))
    assert bare(after["updated_by"]) == ("HumanUser", human_user_id(sg, USER[0]))


# -- delete and revive --------------------------------------------------------------------


def test_delete_retires_and_find_retired_only_sees_it(sg):
    code = uniq("del")
    shot = sg.create("Shot", {"code": code, "description": "kept while retired"})
    assert sg.delete("Shot", shot["id"]) is True
    assert sg.find("Shot", [["code", "is", code]], ["code"]) == []
    assert sg.find_one("Shot", [["id", "is", shot["id"]]]) is None
    retired = sg.find("Shot", [["code", "is", code]], ["code", "description"], retired_only=True)
    assert [(r["id"], r["code"], r["description"]) for r in retired] == [(shot["id"], code, "kept while retired")]
    # Only retired records come back with retired_only.
    assert all(r["id"] != 1 for r in sg.find("Shot", [], ["code"], retired_only=True))
    assert sg.delete("Shot", shot["id"]) is False, "deleting a retired record again returns False"
    with pytest.raises(shotgun_api3.Fault):
        sg.update("Shot", shot["id"], {"description": "writing to a retired record"})
    assert fetch(sg, "Shot", shot["id"], ["description"], retired=True)["description"] == "kept while retired"


def test_revive_brings_a_record_back(sg):
    code = uniq("rev")
    shot = sg.create("Shot", {"code": code, "sg_status_list": "hld"})
    assert sg.revive("Shot", shot["id"]) is False, "reviving a live record returns False"
    assert sg.delete("Shot", shot["id"]) is True
    assert sg.revive("Shot", shot["id"]) is True
    assert sg.revive("Shot", shot["id"]) is False
    back = fetch(sg, "Shot", shot["id"], ["code", "sg_status_list"])
    assert back and back["code"] == code and back["sg_status_list"] == "hld"
    assert fetch(sg, "Shot", shot["id"], ["code"], retired=True) is None
    # It is writable again.
    sg.update("Shot", shot["id"], {"sg_status_list": "ip"})
    assert fetch(sg, "Shot", shot["id"], ["sg_status_list"])["sg_status_list"] == "ip"


@pytest.mark.parametrize("method", ["delete", "revive"])
def test_delete_and_revive_of_a_missing_record_fault(sg, method):
    with pytest.raises(shotgun_api3.Fault) as info:
        getattr(sg, method)("Shot", 987654)
    assert not isinstance(info.value, shotgun_api3.AuthenticationFault)


def test_delete_retires_the_tasks_of_a_record(sg):
    shot = new_shot(sg)
    tasks = [sg.create("Task", {"content": uniq("task"), "entity": shot}) for _ in range(2)]
    ids = sorted(t["id"] for t in tasks)
    other = sg.create("Task", {"content": uniq("task"), "entity": new_shot(sg)})
    before = last_event_id(sg)
    assert sg.delete("Shot", shot["id"]) is True
    retirements = [(r["meta"]["entity_type"], r["meta"]["entity_id"]) for r in events_after(sg, before)
                   if r["event_type"].endswith("_Retirement")]
    assert sorted(retirements) == sorted([("Shot", shot["id"])] + [("Task", i) for i in ids])
    assert retirements[-1] == ("Shot", shot["id"]), "the tasks are logged before their shot"
    assert sg.find("Task", [["id", "in", ids]], []) == []
    assert sorted(t["id"] for t in sg.find("Task", [["id", "in", ids]], [], retired_only=True)) == ids
    assert fetch(sg, "Task", other["id"], ["content"]) is not None, "other shots' tasks are untouched"


def test_revive_restores_the_tasks_retired_with_it(sg):
    shot = new_shot(sg)
    kept = sg.create("Task", {"content": uniq("task"), "entity": shot})
    gone_before = sg.create("Task", {"content": uniq("task"), "entity": shot})
    assert sg.delete("Task", gone_before["id"]) is True
    time.sleep(1.1)  # so the two retirements have different stamps
    assert sg.delete("Shot", shot["id"]) is True
    assert sg.revive("Shot", shot["id"]) is True
    active = [t["id"] for t in sg.find("Task", [["id", "in", [kept["id"], gone_before["id"]]]], [])]
    assert active == [kept["id"]], \
        "the task retired with the shot is back, the task retired on its own stays retired"
    assert task_ids(sg, "Shot", shot["id"]) == [kept["id"]]


# -- batch --------------------------------------------------------------------------------


def test_batch_returns_results_in_order(sg):
    victim = new_shot(sg)
    target = new_shot(sg)
    code_a, code_b = uniq("batch"), uniq("batch")
    results = sg.batch([
        {"request_type": "create", "entity_type": "Shot", "data": {"code": code_a, "project": PROJECT}},
        {"request_type": "update", "entity_type": "Shot", "entity_id": target["id"],
         "data": {"description": "batched", "sg_cut_in": 17}},
        {"request_type": "delete", "entity_type": "Shot", "entity_id": victim["id"]},
        {"request_type": "create", "entity_type": "Asset", "data": {"code": code_b, "shots": [target]}},
        {"request_type": "update", "entity_type": "Shot", "entity_id": target["id"],
         "data": {"assets": [link("Asset", 1)]}, "multi_entity_update_modes": {"assets": "add"}},
    ])
    assert len(results) == 5
    assert results[0]["type"] == "Shot" and results[0]["code"] == code_a and isinstance(results[0]["id"], int)
    assert bare(results[0]["project"]) == ("Project", 1)
    assert (results[1]["type"], results[1]["id"], results[1]["description"], results[1]["sg_cut_in"]) == \
        ("Shot", target["id"], "batched", 17)
    assert results[2] is True
    assert results[3]["type"] == "Asset" and results[3]["code"] == code_b
    assert sorted(bare(results[4]["assets"])) == sorted([("Asset", 1), ("Asset", results[3]["id"])]), \
        "a later item sees what an earlier item of the same batch did"

    assert fetch(sg, "Shot", results[0]["id"], ["code"])["code"] == code_a
    assert fetch(sg, "Shot", target["id"], ["description"])["description"] == "batched"
    assert fetch(sg, "Shot", victim["id"], ["code"]) is None
    assert fetch(sg, "Shot", victim["id"], ["code"], retired=True) is not None


def test_batch_is_all_or_nothing(sg):
    target = sg.create("Shot", {"code": uniq("batch"), "description": "before"})
    doomed = new_shot(sg)
    code = uniq("rolled_back")
    before_events = last_event_id(sg)
    with pytest.raises(shotgun_api3.Fault):
        sg.batch([
            {"request_type": "create", "entity_type": "Shot", "data": {"code": code}},
            {"request_type": "update", "entity_type": "Shot", "entity_id": target["id"],
             "data": {"description": "after"}},
            {"request_type": "delete", "entity_type": "Shot", "entity_id": doomed["id"]},
            {"request_type": "update", "entity_type": "Shot", "entity_id": target["id"],
             "data": {"sg_cut_in": "not a number"}},
        ])
    assert sg.find("Shot", [["code", "is", code]], []) == []
    assert sg.find("Shot", [["code", "is", code]], [], retired_only=True) == []
    assert fetch(sg, "Shot", target["id"], ["description"])["description"] == "before"
    assert fetch(sg, "Shot", doomed["id"], ["code"]) is not None, "the delete was rolled back"
    assert events_after(sg, before_events) == [], "a rolled-back batch logs nothing"


def test_batch_rolls_back_on_a_missing_record(sg):
    code = uniq("rolled_back")
    with pytest.raises(shotgun_api3.Fault):
        sg.batch([
            {"request_type": "create", "entity_type": "Shot", "data": {"code": code}},
            {"request_type": "delete", "entity_type": "Shot", "entity_id": 987654},
        ])
    assert sg.find("Shot", [["code", "is", code]], []) == []
    assert sg.find("Shot", [["code", "is", code]], [], retired_only=True) == []


# -- validation ---------------------------------------------------------------------------

# (id, entity type, field, bad value)
BAD_WRITES = [
    ("number-given-text", "Shot", "sg_cut_in", "abc"),
    ("number-given-fraction", "Shot", "sg_cut_in", 1.5),
    ("number-given-bool", "Shot", "sg_cut_in", True),
    ("float-given-text", "Version", "sg_frames_aspect_ratio", "wide"),
    ("checkbox-given-text", "Version", "flagged", "yes"),
    ("text-given-number", "Shot", "description", 42),
    ("date-impossible", "Task", "due_date", "2024-02-30"),
    ("date-not-a-date", "Task", "due_date", "next week"),
    ("date_time-not-a-time", "Version", "media_center_import_time", "yesterday"),
    ("date_time-given-date", "Version", "media_center_import_time", "2024-05-06"),
    ("status-not-valid", "Shot", "sg_status_list", "nope"),
    ("list-not-valid", "Asset", "sg_asset_type", "Spaceship"),
    ("entity-wrong-type", "Shot", "sg_sequence", link("Asset", 1)),
    ("entity-missing-record", "Shot", "sg_sequence", link("Sequence", 987654)),
    ("entity-not-a-link", "Shot", "sg_sequence", "SEQ_A"),
    ("multi-wrong-type", "Shot", "assets", [link("Shot", 1)]),
    ("multi-missing-record", "Shot", "assets", [link("Asset", 1), link("Asset", 987654)]),
    ("multi-not-a-list", "Shot", "assets", link("Asset", 1)),
    ("entity_type-unknown", "Step", "entity_type", "NotAnEntityType"),
    ("color-given-number", "Task", "color", 12),
    ("url-given-number", "Version", "sg_uploaded_movie", 5),
    ("unknown-field", "Shot", "sg_no_such_field", "x"),
    ("created_at", "Shot", "created_at", _dt.datetime(2020, 1, 1, tzinfo=UTC)),
    ("updated_at", "Shot", "updated_at", _dt.datetime(2020, 1, 1, tzinfo=UTC)),
    ("created_by", "Shot", "created_by", link("HumanUser", 1)),
    ("updated_by", "Shot", "updated_by", link("HumanUser", 1)),
    ("id", "Shot", "id", 555555),
    ("not-editable", "Shot", "open_notes_count", "3"),
]


def assert_fault(call):
    with pytest.raises(shotgun_api3.Fault) as info:
        call()
    assert not isinstance(info.value, shotgun_api3.AuthenticationFault), info.value
    return info.value


@pytest.mark.parametrize("case", BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
def test_bad_create_is_refused_and_changes_nothing(sg, case):
    _, entity_type, field, value = case
    name_field = NAME_FIELD[entity_type]
    name = uniq("bad")
    before_events = last_event_id(sg)
    before_ids = {r["id"] for r in sg.find(entity_type, [], [])}
    assert_fault(lambda: sg.create(entity_type, {name_field: name, field: value}))
    assert sg.find(entity_type, [[name_field, "is", name]], []) == []
    assert sg.find(entity_type, [[name_field, "is", name]], [], retired_only=True) == []
    assert {r["id"] for r in sg.find(entity_type, [], [])} == before_ids
    assert events_after(sg, before_events) == []


@pytest.mark.parametrize("case", BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
def test_bad_update_is_refused_and_changes_nothing(sg, case):
    _, entity_type, field, value = case
    name_field = NAME_FIELD[entity_type]
    name = uniq("victim")
    record = sg.create(entity_type, {name_field: name})
    watched = [name_field, "updated_at", "updated_by"] + ([field] if field in ("sg_cut_in", "description") else [])
    before = fetch(sg, entity_type, record["id"], watched)
    before_events = last_event_id(sg)
    # A valid field first: the whole update must be refused, not just the bad field.
    assert_fault(lambda: sg.update(entity_type, record["id"], {name_field: name + "_changed", field: value}))
    assert fetch(sg, entity_type, record["id"], watched) == before
    assert events_after(sg, before_events) == []


def test_writes_to_unknown_types_and_missing_records_fault(sg):
    assert_fault(lambda: sg.create("NoSuchType", {"code": "x"}))
    assert_fault(lambda: sg.update("Shot", 987654, {"description": "x"}))
    assert_fault(lambda: sg.update("NoSuchType", 1, {"code": "x"}))


def test_link_to_a_missing_record_in_a_polymorphic_field(sg):
    assert_fault(lambda: sg.create("Version", {"code": uniq("v"), "entity": link("Shot", 987654)}))
    assert_fault(lambda: sg.create("Version", {"code": uniq("v"), "entity": link("HumanUser", 1)}))


# -- schema edits -------------------------------------------------------------------------


def test_schema_field_create_makes_a_usable_field(sg):
    name = sg.schema_field_create("Shot", "number", "Write Budget")
    assert name == "sg_write_budget"
    definition = sg.schema_field_read("Shot", name)[name]
    assert definition["data_type"]["value"] == "number"
    assert definition["name"]["value"] == "Write Budget"
    assert definition["entity_type"]["value"] == "Shot"
    assert name in sg.schema_read()["Shot"]
    assert name in sg.schema_field_read("Shot")

    # Readable and writable at once.
    shot = sg.create("Shot", {"code": uniq("budget"), name: 250})
    assert shot[name] == 250
    assert fetch(sg, "Shot", shot["id"], [name])[name] == 250
    sg.update("Shot", shot["id"], {name: 300})
    assert [r["id"] for r in sg.find("Shot", [[name, "greater_than", 299]], [name])] == [shot["id"]]
    assert fetch(sg, "Shot", 1, [name])[name] is None, "existing records read the new field as null"
    assert_fault(lambda: sg.update("Shot", shot["id"], {name: "lots"}))


# (data type, properties, value written, value read back for a record that never set it)
NEW_FIELD_TYPES = [
    ("text", None, "free text", None),
    ("number", None, -12, None),
    ("float", None, 0.25, None),
    ("checkbox", None, True, False),
    ("date", None, "2024-07-01", None),
    ("date_time", None, _dt.datetime(2024, 7, 1, 12, 30, tzinfo=UTC), None),
    ("list", {"valid_values": ["x", "y"]}, "y", None),
    ("entity", {"valid_types": ["Sequence"]}, link("Sequence", 2), None),
    ("multi_entity", {"valid_types": ["Asset", "Sequence"]}, [link("Asset", 1), link("Sequence", 1)], []),
    ("url", None, {"url": "https://example.com/doc", "name": "doc", "link_type": "web"}, None),
    ("color", None, "10,20,30", None),
]


@pytest.mark.parametrize("case", NEW_FIELD_TYPES, ids=[c[0] for c in NEW_FIELD_TYPES])
def test_schema_field_create_every_data_type(sg, case):
    data_type, properties, value, unset = case
    display = "Write New %s" % data_type.replace("_", " ").title()
    name = sg.schema_field_create("Sequence", data_type, display, properties)
    assert name.startswith("sg_write_new_")
    assert sg.schema_field_read("Sequence", name)[name]["data_type"]["value"] == data_type
    seq = sg.create("Sequence", {"code": uniq("seq"), name: value})
    assert_same_value(name, seq[name], value)
    assert_same_value(name, fetch(sg, "Sequence", seq["id"], [name])[name], value)
    assert fetch(sg, "Sequence", 1, [name])[name] == unset


def test_schema_field_create_refuses_bad_requests(sg):
    assert_fault(lambda: sg.schema_field_create("NoSuchType", "text", "Write Nothing"))
    assert_fault(lambda: sg.schema_field_create("Shot", "no_such_data_type", "Write Nothing"))
    assert "sg_write_nothing" not in sg.schema_field_read("Shot")


def test_schema_field_create_picks_a_free_name(sg):
    first = sg.schema_field_create("Asset", "text", "Write Notes")
    second = sg.schema_field_create("Asset", "text", "Write Notes")
    assert first == "sg_write_notes"
    assert second == "sg_write_notes_1"
    asset = new_asset(sg, **{first: "one", second: "two"})
    got = fetch(sg, "Asset", asset["id"], [first, second])
    assert (got[first], got[second]) == ("one", "two")


def test_schema_field_create_list_enforces_valid_values(sg):
    name = sg.schema_field_create("Shot", "list", "Write Kind", {"valid_values": ["alpha", "beta"]})
    definition = sg.schema_field_read("Shot", name)[name]
    assert definition["properties"]["valid_values"]["value"] == ["alpha", "beta"]
    shot = new_shot(sg, **{name: "alpha"})
    assert fetch(sg, "Shot", shot["id"], [name])[name] == "alpha"
    assert_fault(lambda: sg.update("Shot", shot["id"], {name: "gamma"}))
    assert fetch(sg, "Shot", shot["id"], [name])[name] == "alpha"


def test_schema_field_create_links_enforce_valid_types(sg):
    single = sg.schema_field_create("Shot", "entity", "Write Hero", {"valid_types": ["Asset"]})
    multi = sg.schema_field_create("Shot", "multi_entity", "Write Props", {"valid_types": ["Asset"]})
    assert sg.schema_field_read("Shot", multi)[multi]["properties"]["valid_types"]["value"] == ["Asset"]
    shot = new_shot(sg, **{single: link("Asset", 1), multi: [link("Asset", 2), link("Asset", 3)]})
    got = fetch(sg, "Shot", shot["id"], [single, multi])
    assert bare(got[single]) == ("Asset", 1) and got[single]["name"] == "hero"
    assert sorted(bare(got[multi])) == [("Asset", 2), ("Asset", 3)]
    assert_fault(lambda: sg.update("Shot", shot["id"], {single: link("Shot", 1)}))
    assert_fault(lambda: sg.update("Shot", shot["id"], {multi: [link("Sequence", 1)]}))


def test_schema_field_update_changes_properties(sg):
    name = sg.schema_field_create("Shot", "text", "Write Label")
    assert sg.schema_field_update("Shot", name, {"name": "Write Label Renamed",
                                                 "description": "edited by the suite"}) is True
    definition = sg.schema_field_read("Shot", name)[name]
    assert definition["name"]["value"] == "Write Label Renamed"
    assert definition["description"]["value"] == "edited by the suite"
    assert definition["data_type"]["value"] == "text"
    assert_fault(lambda: sg.schema_field_update("Shot", "sg_no_such_field", {"name": "x"}))


def test_schema_field_delete_removes_the_field(sg):
    name = sg.schema_field_create("Shot", "text", "Write Doomed")
    shot = new_shot(sg, **{name: "soon gone"})
    assert sg.schema_field_delete("Shot", name) is True
    assert name not in sg.schema_read()["Shot"]
    assert name not in sg.schema_field_read("Shot")
    assert_fault(lambda: sg.schema_field_read("Shot", name))
    assert_fault(lambda: sg.find("Shot", [], [name]))
    assert_fault(lambda: sg.update("Shot", shot["id"], {name: "again"}))
    assert fetch(sg, "Shot", shot["id"], ["code"])["code"] == shot["code"]
    assert_fault(lambda: sg.schema_field_delete("Shot", name))


def test_schema_edits_log_display_column_rows(sg):
    before = last_event_id(sg)
    name = sg.schema_field_create("Sequence", "number", "Write Count")
    sg.schema_field_update("Sequence", name, {"description": "d"})
    sg.schema_field_delete("Sequence", name)
    rows = events_after(sg, before)
    assert [r["event_type"] for r in rows] == ["Shotgun_DisplayColumn_New", "Shotgun_DisplayColumn_Change",
                                               "Shotgun_DisplayColumn_Delete"]
    assert all(r["meta"].get("field_name") == name for r in rows)
    assert all(bare(r["user"]) == ("ApiUser", api_user_id(sg, SCRIPT_NAME)) for r in rows)


# -- authentication -----------------------------------------------------------------------


def test_bad_credentials_raise_authentication_fault(wsite, sg):
    code = uniq("intruder")
    bad_clients = [
        wsite.client(SCRIPT_NAME, "wrong-key"),
        wsite.client("no_such_script", SCRIPT_KEY),
        wsite.user_client(USER[0], "wrong-password"),
        wsite.user_client("nobody", USER[1]),
        wsite.token_client("0" * 32),
    ]
    for client in bad_clients:
        with pytest.raises(shotgun_api3.AuthenticationFault):
            client.find_one("Shot", [])
        with pytest.raises(shotgun_api3.AuthenticationFault):
            client.create("Shot", {"code": code})
    assert sg.find("Shot", [["code", "is", code]], []) == []


def test_login_user_can_write(wsite, sg):
    user = wsite.user_client()
    before = last_event_id(sg)
    shot = user.create("Shot", {"code": uniq("by_user")}, return_fields=["created_by"])
    me = ("HumanUser", human_user_id(sg, USER[0]))
    assert bare(shot["created_by"]) == me
    rows = events_after(sg, before)
    assert rows and all(bare(r["user"]) == me for r in rows)


def test_session_token_from_a_script(wsite, sg):
    token = wsite.client().get_session_token()
    assert isinstance(token, str) and token
    other = wsite.token_client(token)
    assert other.find_one("Shot", [["id", "is", 1]], ["code"])["code"] == "sh010"
    shot = other.create("Shot", {"code": uniq("by_token")}, return_fields=["created_by"])
    assert bare(shot["created_by"]) == ("ApiUser", api_user_id(sg, SCRIPT_NAME))
    assert fetch(sg, "Shot", shot["id"], ["code"])["code"] == shot["code"]


def test_session_token_from_a_login(wsite, sg):
    user = wsite.user_client()
    before = last_event_id(sg)
    token = user.get_session_token()
    assert isinstance(token, str) and token
    me = ("HumanUser", human_user_id(sg, USER[0]))
    logins = [r for r in events_after(sg, before) if r["event_type"] == "Shotgun_User_Login"]
    assert [bare(r["user"]) for r in logins] == [me]
    other = wsite.token_client(token)
    shot = other.create("Shot", {"code": uniq("by_user_token")}, return_fields=["created_by"])
    assert bare(shot["created_by"]) == me


# -- the event log ------------------------------------------------------------------------


def rows_about(rows, entity_type, entity_id):
    return [r for r in rows if r["meta"] and r["meta"].get("entity_type") == entity_type
            and r["meta"].get("entity_id") == entity_id]


def test_create_logs_new_then_in_create_change_rows(sg):
    before = last_event_id(sg)
    code = uniq("ev_new")
    shot = sg.create("Shot", {"code": code, "project": PROJECT, "sg_cut_in": 101,
                              "sg_sequence": link("Sequence", 1), "assets": [link("Asset", 3)]})
    rows = events_after(sg, before)
    me = ("ApiUser", api_user_id(sg, SCRIPT_NAME))
    assert rows, "a create logs rows"
    new = rows[0]
    assert new["event_type"] == "Shotgun_Shot_New"
    assert new["attribute_name"] is None
    assert new["meta"] == {"type": "new_entity", "entity_type": "Shot", "entity_id": shot["id"]}
    assert bare(new["entity"]) == ("Shot", shot["id"]) and new["entity"]["name"] == code
    assert bare(new["project"]) == ("Project", 1)
    assert all(bare(r["user"]) == me for r in rows)
    assert all(r["id"] > before for r in rows) and [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    for r in rows:
        assert_recent(r["created_at"])

    changes = {r["attribute_name"]: r for r in rows if r["event_type"] == "Shotgun_Shot_Change"
               and r["meta"].get("entity_id") == shot["id"] and "actual_attribute_changed" not in r["meta"]}
    for field in ("code", "project", "sg_cut_in", "sg_sequence", "sg_status_list", "assets"):
        assert field in changes, "no in_create row for %s (got %s)" % (field, sorted(changes))
        meta = changes[field]["meta"]
        assert meta["type"] == "attribute_change" and meta["attribute_name"] == field
        assert meta["in_create"] is True
        assert meta.get("old_value") is None
    assert changes["code"]["meta"]["new_value"] == code
    assert changes["sg_cut_in"]["meta"]["new_value"] == 101
    assert changes["sg_cut_in"]["meta"]["field_data_type"] == "number"
    assert changes["sg_status_list"]["meta"]["new_value"] == "wtg", "defaults get in_create rows too"
    assert bare(changes["sg_sequence"]["meta"]["new_value"]) == ("Sequence", 1)
    assert not {"created_at", "updated_at", "created_by", "updated_by"} & set(changes), \
        "audit fields are never logged"

    # The back-reference row on the Sequence.
    back = [r for r in rows if r["event_type"] == "Shotgun_Sequence_Change"]
    assert len(back) == 1
    assert back[0]["attribute_name"] == "shots"
    assert bare(back[0]["entity"]) == ("Sequence", 1)
    assert back[0]["meta"]["actual_attribute_changed"] == "Shot.sg_sequence"
    assert back[0]["meta"]["original_event_log_entry_id"] == changes["sg_sequence"]["id"]
    assert [bare(a) for a in back[0]["meta"]["added"]] == [("Shot", shot["id"])]
    assert back[0]["meta"]["in_create"] is True

    # A multi_entity value set at creation: added/removed instead of old/new values.
    assets = changes["assets"]["meta"]
    assert [bare(a) for a in assets["added"]] == [("Asset", 3)] and assets["removed"] == []
    assert "new_value" not in assets
    asset_back = [r for r in rows if r["event_type"] == "Shotgun_Asset_Change"]
    assert [(r["attribute_name"], bare(r["entity"]), r["meta"]["actual_attribute_changed"]) for r in asset_back] \
        == [("shots", ("Asset", 3), "Shot.assets")]


def test_update_logs_change_rows(sg):
    shot = sg.create("Shot", {"code": uniq("ev_upd"), "project": PROJECT, "sg_status_list": "ip",
                              "sg_sequence": link("Sequence", 1), "assets": [link("Asset", 1)]})
    before = last_event_id(sg)
    sg.update("Shot", shot["id"], {"sg_status_list": "fin", "sg_sequence": link("Sequence", 2),
                                   "assets": [link("Asset", 2)]},
              multi_entity_update_modes={"assets": "add"})
    rows = events_after(sg, before)
    forward = {r["attribute_name"]: r for r in rows
               if r["event_type"] == "Shotgun_Shot_Change" and bare(r["entity"]) == ("Shot", shot["id"])}
    assert set(forward) == {"sg_status_list", "sg_sequence", "assets"}, \
        "one Change row per changed field, none for audit fields"

    status = forward["sg_status_list"]["meta"]
    assert (status["type"], status["entity_type"], status["entity_id"], status["field_data_type"]) == \
        ("attribute_change", "Shot", shot["id"], "status_list")
    assert (status["old_value"], status["new_value"]) == ("ip", "fin")
    assert "in_create" not in status

    seq = forward["sg_sequence"]["meta"]
    assert bare(seq["old_value"]) == ("Sequence", 1) and bare(seq["new_value"]) == ("Sequence", 2)
    assert seq["field_data_type"] == "entity"

    assets = forward["assets"]["meta"]
    assert "old_value" not in assets and "new_value" not in assets
    assert [bare(a) for a in assets["added"]] == [("Asset", 2)] and assets["removed"] == []
    assert assets["field_data_type"] == "multi_entity"

    # Back-reference rows: Sequence 1 lost the shot, Sequence 2 and Asset 2 gained it.
    back = {(r["event_type"], r["entity"]["id"] if r["entity"] else None): r["meta"]
            for r in rows if "actual_attribute_changed" in (r["meta"] or {})}
    assert [bare(x) for x in back[("Shotgun_Sequence_Change", 1)]["removed"]] == [("Shot", shot["id"])]
    assert [bare(x) for x in back[("Shotgun_Sequence_Change", 2)]["added"]] == [("Shot", shot["id"])]
    asset_row = back[("Shotgun_Asset_Change", 2)]
    assert asset_row["actual_attribute_changed"] == "Shot.assets"
    assert asset_row["original_event_log_entry_id"] == forward["assets"]["id"]
    assert [bare(x) for x in asset_row["added"]] == [("Shot", shot["id"])]

    # Writing the value a field already has logs nothing.
    before = last_event_id(sg)
    sg.update("Shot", shot["id"], {"sg_status_list": "fin"})
    assert events_after(sg, before) == []


def test_delete_logs_retirement_and_revive_logs_revival(sg):
    code = uniq("ev_del")
    before = last_event_id(sg)
    shot = sg.create("Shot", {"code": code, "project": PROJECT})
    new_row = events_after(sg, before)[0]
    assert new_row["event_type"] == "Shotgun_Shot_New" and bare(new_row["entity"]) == ("Shot", shot["id"])
    before = last_event_id(sg)
    assert sg.delete("Shot", shot["id"]) is True
    rows = events_after(sg, before)
    assert [(r["event_type"], r["attribute_name"]) for r in rows] == [
        ("Shotgun_Shot_Change", "retirement_date"), ("Shotgun_Shot_Retirement", None)]
    stamp_change, retirement = rows
    assert stamp_change["meta"]["old_value"] is None
    assert isinstance(stamp_change["meta"]["new_value"], str) and stamp_change["meta"]["new_value"].endswith(" UTC")
    meta = retirement["meta"]
    assert meta["type"] == "entity_retirement"
    assert (meta["entity_type"], meta["entity_id"], meta["id"], meta["class_name"], meta["display_name"]) == \
        ("Shot", shot["id"], shot["id"], "Shot", code)
    assert meta["retirement_date"] == stamp_change["meta"]["new_value"]
    assert retirement["entity"] is None, "the entity of an event reads as null while it is retired"
    assert bare(retirement["project"]) == ("Project", 1)
    assert sg.find_one("EventLogEntry", [["id", "is", new_row["id"]]], ["entity"])["entity"] is None

    before = last_event_id(sg)
    assert sg.delete("Shot", shot["id"]) is False
    assert events_after(sg, before) == [], "a delete that does nothing logs nothing"

    assert sg.revive("Shot", shot["id"]) is True
    rows = events_after(sg, before)
    assert [(r["event_type"], r["attribute_name"]) for r in rows] == [
        ("Shotgun_Shot_Change", "retirement_date"), ("Shotgun_Shot_Revival", None)]
    stamp_change, revival = rows
    assert stamp_change["meta"]["new_value"] is None
    assert stamp_change["meta"]["old_value"] == meta["retirement_date"]
    assert (revival["meta"]["entity_type"], revival["meta"]["entity_id"], revival["meta"]["class_name"],
            revival["meta"]["display_name"]) == ("Shot", shot["id"], "Shot", code)
    assert bare(revival["entity"]) == ("Shot", shot["id"])
    assert bare(retirement["user"]) == bare(revival["user"]) == ("ApiUser", api_user_id(sg, SCRIPT_NAME))
    # Once revived, old rows show the entity again.
    assert bare(sg.find_one("EventLogEntry", [["id", "is", retirement["id"]]], ["entity"])["entity"]) == \
        ("Shot", shot["id"])


def test_session_uuid_is_recorded_on_event_rows(wsite):
    client = wsite.client()
    uuid = "0f0e0d0c-0b0a-4909-8807-060504030201"
    client.set_session_uuid(uuid)
    before = last_event_id(client)
    client.create("Shot", {"code": uniq("ev_uuid")})
    rows = events_after(client, before)
    assert rows and all(r["session_uuid"] == uuid for r in rows)


def test_no_events_script_writes_but_logs_nothing(wsite, sg):
    quiet = wsite.client(*QUIET_SCRIPT)
    before = last_event_id(sg)
    code = uniq("quiet")
    shot = quiet.create("Shot", {"code": code, "project": PROJECT, "assets": [link("Asset", 1)]},
                        return_fields=["created_by"])
    assert bare(shot["created_by"]) == ("ApiUser", api_user_id(sg, QUIET_SCRIPT[0]))
    quiet.update("Shot", shot["id"], {"description": "quietly"})
    task = quiet.create("Task", {"content": uniq("quiet_task"), "entity": shot})
    assert quiet.delete("Task", task["id"]) is True
    assert quiet.revive("Task", task["id"]) is True
    quiet.batch([{"request_type": "update", "entity_type": "Shot", "entity_id": shot["id"],
                  "data": {"sg_cut_in": 5}}])

    # The writes happened, inverse links included...
    got = fetch(sg, "Shot", shot["id"], ["code", "description", "sg_cut_in", "tasks"])
    assert (got["code"], got["description"], got["sg_cut_in"]) == (code, "quietly", 5)
    assert [t["id"] for t in got["tasks"]] == [task["id"]]
    assert shot["id"] in shot_ids(sg, 1)
    # ...and logged nothing.
    assert events_after(sg, before) == []
    assert last_event_id(sg) == before

    # The same writes by the normal script are logged.
    sg.update("Shot", shot["id"], {"description": "loudly"})
    assert [r["attribute_name"] for r in events_after(sg, before)] == ["description"]


def test_scripts_can_log_custom_events(sg):
    event = sg.create("EventLogEntry", {"event_type": "Toolkit_Writes_Test", "description": "custom",
                                        "entity": link("Shot", 1), "project": PROJECT,
                                        "meta": {"core": "v0.20.0"}})
    row = sg.find_one("EventLogEntry", [["id", "is", event["id"]]], EVENT_FIELDS + ["description"])
    assert row["event_type"] == "Toolkit_Writes_Test" and row["description"] == "custom"
    assert row["meta"] == {"core": "v0.20.0"}
    assert bare(row["user"]) == ("ApiUser", api_user_id(sg, SCRIPT_NAME))


def test_event_log_entries_cannot_be_deleted(sg):
    new_shot(sg)
    row_id = last_event_id(sg)
    with pytest.raises(shotgun_api3.Fault):
        sg.delete("EventLogEntry", row_id)
    assert sg.find_one("EventLogEntry", [["id", "is", row_id]], ["event_type"]) is not None


def test_event_log_entries_cannot_be_updated(sg):
    new_shot(sg)
    row_id = last_event_id(sg)
    before = sg.find_one("EventLogEntry", [["id", "is", row_id]], ["event_type", "description"])
    assert_fault(lambda: sg.update("EventLogEntry", row_id, {"description": "rewritten history"}))
    assert sg.find_one("EventLogEntry", [["id", "is", row_id]], ["event_type", "description"]) == before
