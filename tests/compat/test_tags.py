"""tag_list fields hold tag names, through the official client (shotgun_api3): written as
lists of strings through the cache's proxy, read back equal through the site and through
the proxy, and filtered (`is`, `is_not`, `name_contains`, `name_not_contains`, `name_id`)
with the same answers from the proxy, which answers them from the cache, as from the site.

The fixture schema has tag_list fields but no Tag type, whose records give tags their
ids (`name_id`); these stacks serve it with the Tag type of the simulated site's built-in
schema added.  mockgun is no oracle here: it implements neither writes nor filters on
tag_list.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dataset as dataset_mod
from conftest import connect
from proxy_support import start_stack

BUILTIN_SCHEMA = Path(__file__).resolve().parent.parent.parent / "crates" / "sim" / "src" / "builtin_schema.json"

TAGS = [{"id": 1, "name": "hero"}, {"id": 2, "name": "fx"}, {"id": 3, "name": "night"}]
SHOTS = [
    {"id": 1, "code": "sh010", "tag_list": ["hero", "fx"]},
    {"id": 2, "code": "sh020", "tag_list": ["fx"]},
    {"id": 3, "code": "sh030"},
    {"id": 4, "code": "sh040", "tag_list": ["night", "hero"]},
]

FILTERS = [
    ["tag_list", "is", "hero"],
    ["tag_list", "is", "FX"],
    ["tag_list", "is", None],
    ["tag_list", "is_not", "hero"],
    ["tag_list", "is_not", None],
    ["tag_list", "name_contains", "ER"],
    ["tag_list", "name_contains", "i"],
    ["tag_list", "name_not_contains", "x"],
    ["tag_list", "name_id", 1],
    ["tag_list", "name_id", 2],
    ["tag_list", "name_id", 99],
]


def schema_with_tags(tmp_dir: Path) -> tuple[Path, Path]:
    """The fixture schema files with the built-in Tag type added."""
    fields, entities = dataset_mod.load_schema()
    builtin = json.loads(BUILTIN_SCHEMA.read_text(encoding="utf-8"))
    fields["Tag"] = builtin["Tag"]
    entities["Tag"] = {"name": {"editable": False, "value": "Tag"}}
    fields_path, entities_path = tmp_dir / "fields.json", tmp_dir / "entities.json"
    fields_path.write_text(json.dumps(fields), encoding="utf-8")
    entities_path.write_text(json.dumps(entities), encoding="utf-8")
    return fields_path, entities_path


def tag_stack(tmp_dir: Path, types: list[str]):
    fields_path, entities_path = schema_with_tags(tmp_dir)
    kept = dataset_mod.FIELDS_JSON, dataset_mod.ENTITIES_JSON
    dataset_mod.FIELDS_JSON, dataset_mod.ENTITIES_JSON = fields_path, entities_path
    try:
        stack = start_stack(tmp_dir, {"Tag": TAGS, "Shot": SHOTS}, types, accounts=False)
    finally:
        dataset_mod.FIELDS_JSON, dataset_mod.ENTITIES_JSON = kept
    try:
        stack.settle()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = tag_stack(tmp_path_factory.mktemp("tags"), ["Shot", "Tag"])
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def psg(stack):
    return connect(stack.url)


@pytest.fixture(scope="module")
def ssg(stack):
    return connect(stack.site_url)


def shots(sg, filters):
    return sg.find("Shot", filters, ["code", "tag_list"], order=[{"field_name": "id", "direction": "asc"}])


def reads_reaching_site(stack, mark, entity_type="Shot"):
    return [e for e in stack.tap.since(mark) if e["method"] == "read" and e["type"] == entity_type]


def test_tag_lists_round_trip_as_names(stack, psg, ssg):
    created = psg.create("Shot", {"code": "sh050", "tag_list": ["rain", "hero"]})
    assert created["tag_list"] == ["rain", "hero"]
    shot = created["id"]
    writes = [
        ({"tag_list": ["b", "a"]}, None, ["b", "a"]),
        ({"tag_list": ["c", "a"]}, {"tag_list": "add"}, ["b", "a", "c"]),
        ({"tag_list": ["a"]}, {"tag_list": "remove"}, ["b", "c"]),
        ({"tag_list": []}, None, []),
        ({"tag_list": ["night", "fx"]}, None, ["night", "fx"]),
    ]
    for data, modes, expected in writes:
        updated = psg.update("Shot", shot, data, multi_entity_update_modes=modes)
        assert updated["tag_list"] == expected, (data, modes, updated)
        assert ssg.find_one("Shot", [["id", "is", shot]], ["tag_list"])["tag_list"] == expected
        stack.settle()
        mark = stack.tap.mark()
        through_proxy = psg.find_one("Shot", [["id", "is", shot]], ["tag_list"])
        assert through_proxy["tag_list"] == expected, (data, modes, through_proxy)
        assert reads_reaching_site(stack, mark) == [], "the proxy answered from the cache"
    # Whole records agree too, every shot and every tag the writes made.
    assert shots(psg, []) == shots(ssg, [])
    assert psg.find("Tag", [], ["name"]) == ssg.find("Tag", [], ["name"])


def test_tag_list_writes_of_other_shapes_get_the_sites_fault(psg, ssg):
    for bad in ("hero", [1], [{"type": "Tag", "id": 1}]):
        with pytest.raises(Exception) as through_proxy:
            psg.update("Shot", 3, {"tag_list": bad})
        with pytest.raises(Exception) as at_site:
            ssg.update("Shot", 3, {"tag_list": bad})
        assert type(through_proxy.value) is type(at_site.value)
        assert str(through_proxy.value) == str(at_site.value)


@pytest.mark.parametrize("condition", FILTERS, ids=lambda c: "%s-%s" % (c[1], c[2]))
def test_tag_filters_match_site(stack, psg, ssg, condition):
    mark = stack.tap.mark()
    got = shots(psg, [condition])
    assert reads_reaching_site(stack, mark) == [], "the proxy answered from the cache"
    assert got == shots(ssg, [condition])


def test_tag_ids_go_to_the_site_without_tag_records(tmp_path):
    """With no Tag records cached, `name_id` is the site's to answer; the other tag
    filters stay the cache's."""
    stack = tag_stack(tmp_path, ["Shot"])
    try:
        psg, ssg = connect(stack.url), connect(stack.site_url)
        for condition in (["tag_list", "name_id", 2], ["tag_list", "is", "fx"]):
            mark = stack.tap.mark()
            got = shots(psg, [condition])
            reached = reads_reaching_site(stack, mark)
            assert got == shots(ssg, [condition])
            assert len(reached) == (1 if condition[1] == "name_id" else 0), reached
        assert [s["id"] for s in shots(psg, [["tag_list", "name_id", 2]])] == [1, 2]
    finally:
        stack.stop()
