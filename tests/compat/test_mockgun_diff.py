"""Differential test: thousands of random `find` calls against the simulated site and mockgun.

The same generated dataset is loaded into `shotgun_api3.lib.mockgun` (the fixture schema
is pickled into the files mockgun reads) and into `shotgun-cache sim`.  A seeded generator
then builds random queries -- every relation mockgun supports per data type, deep paths
in filters and return fields, nested any/all groups, single- and two-key sorts,
retired_only, limit -- and each is sent through the official client to the site and
through mockgun; the normalized results must be identical (links compared by (type, id),
since mockgun has no link names; records compared in order).

mockgun is not a real site.  Where it is known to differ (protocol.md section 3), the
generator either avoids the case or skips the query and counts it under a written reason;
mockgun's bugs are never copied into the expectation:

- Links to retired records: a site hides them.  mockgun would not, so they are removed
  from the rows loaded into mockgun (entity -> None, dropped from multi_entity lists),
  which is the site's behaviour.
- mockgun crashes on null values with ordering relations, `in`, `type_is` and `name_*`:
  such conditions are wrapped in ``{"filter_operator": "all", "filters": [guard, ...,
  condition]}`` where the guards (``[path, "is_not", None]``, ``[link, "type_is", T]``)
  remove the rows mockgun cannot handle, on both sides alike (mockgun's `all` stops at the
  first false guard).  A deep path through a link that can hold several types (mockgun
  raises "does not match type") gets a `type_is` guard in the same way.
- The remaining known differences are skipped and counted; see SKIP_REASONS.

The seed is printed (and can be set with COMPAT_DIFF_SEED); COMPAT_DIFF_QUERIES sets how
many queries must be compared (default 2000).
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import pickle
import random
import time
from collections import Counter

import pytest
import shotgun_api3
from shotgun_api3.lib import mockgun

import oracle

UTC = _dt.timezone.utc
SEED = int(os.environ.get("COMPAT_DIFF_SEED", "1729"))
TARGET = int(os.environ.get("COMPAT_DIFF_QUERIES", "2000"))
MAX_MISMATCH_DETAILS = 15

# Why a generated query is not compared; each is a documented mockgun difference.
SKIP_REASONS = {
    "entity_in_many": "mockgun `in` on an entity field requires the link to equal EVERY listed "
                      "entity (so `in [a, b]` matches nothing); only single-value `in` is compared",
    "entity_not_in": "mockgun has no `not_in` on entity fields",
    "entity_name_is": "mockgun has no `name_is`",
    "name_case": "mockgun's entity name_* relations are case-sensitive, a site's are not; this "
                 "value matches different link targets under the two rules",
    "name_field": "mockgun names a link by the target's `name` or `code` field, a site by its "
                  "display field; they differ for this link type (e.g. Task, Note, PublishedFile)",
    "multi_other_relations": "mockgun supports only is/is_not on multi_entity fields",
    "multi_mixed_types": "mockgun compares multi_entity links by id only, ignoring the type, and "
                         "this field holds links of several types whose ids overlap",
    "scalar_not_in": "mockgun has no `not_in` on number, float, date or date_time fields",
    "not_between_float_date": "a site rejects not_between on float, date and date_time "
                              "(fault 103, see test_compat); mockgun evaluates it",
    "relative_dates": "mockgun has no in_last/in_next/in_calendar_* relations",
    "entity_type_relations": "mockgun supports only `is` on entity_type fields",
    "multi_null_compare": "an ordering relation through a multi_entity path whose linked records "
                          "have nulls crashes mockgun (None < x), and no guard can exclude them",
    "sort_entity": "mockgun cannot sort on entity fields (it compares dicts)",
    "sort_deep": "mockgun raises KeyError on dotted sort fields",
    "sort_unfilterable": "the field cannot be guarded against nulls in mockgun (it cannot filter "
                         "this data type), and mockgun sorts None as 0",
    "sort_text_collation": "the result's text values order differently by code point (mockgun) "
                           "and case-insensitively; how a site collates them is not specified",
}

# Data types mockgun can filter, and the relations it supports on each.
MOCKGUN_FILTERABLE = {"text", "number", "float", "date", "date_time", "checkbox", "entity",
                      "multi_entity", "list", "status_list", "entity_type"}

QUERY_TYPES = [("Shot", 30), ("Task", 18), ("Version", 15), ("Asset", 10), ("Note", 8),
               ("HumanUser", 6), ("Sequence", 5), ("Playlist", 3), ("Reply", 3), ("Step", 2)]

# Deep paths per type, used in filters and return fields.  Excluded by construction:
# a polymorphic link right after a multi_entity hop (no guard can reach it) and an entity
# leaf after a multi_entity hop (mockgun crashes on the list).
DEEP_PATHS = {
    "Shot": ["sg_sequence.Sequence.code", "sg_sequence.Sequence.sg_status_list", "sg_sequence.Sequence.sg_due_1",
             "sg_sequence.Sequence.id", "project.Project.name", "sg_sequence.Sequence.project",
             "sg_sequence.Sequence.project.Project.name", "assets.Asset.code", "assets.Asset.sg_asset_type",
             "assets.Asset.sg_status_list", "assets.Asset.created_at", "created_by.HumanUser.login",
             "created_by.ApiUser.firstname", "sg_sequence.Sequence.description"],
    "Task": ["entity.Shot.code", "entity.Asset.code", "entity.Shot.sg_cut_in", "entity.Asset.sg_asset_type",
             "entity.Shot.sg_sequence", "entity.Shot.sg_sequence.Sequence.code", "step.Step.code",
             "step.Step.entity_type", "step.Step.list_order", "task_assignees.HumanUser.login",
             "task_assignees.HumanUser.sg_status_list", "task_assignees.HumanUser.password_strength",
             "project.Project.name", "entity.Shot.assets"],
    "Version": ["entity.Shot.code", "entity.Asset.sg_asset_type", "sg_task.Task.content", "sg_task.Task.step",
                "sg_task.Task.step.Step.code", "sg_task.Task.due_date", "user.HumanUser.name",
                "user.HumanUser.department", "project.Project.name", "entity.Shot.sg_sequence.Sequence.code",
                "sg_task.Task.entity.Shot.code", "sg_task.Task.milestone"],
    "Asset": ["project.Project.name", "shots.Shot.code", "shots.Shot.sg_cut_in", "shots.Shot.sg_status_list",
              "created_by.HumanUser.name"],
    "Note": ["note_links.Shot.code", "note_links.Asset.code", "note_links.Version.flagged",
             "note_links.Version.sg_frames_aspect_ratio", "user.HumanUser.login", "project.Project.name",
             "addressings_to.HumanUser.name", "addressings_to.Group.code"],
    "HumanUser": ["department.Department.name", "department.Department.code", "groups.Group.code"],
    "Sequence": ["project.Project.name", "project.Project.sg_status", "project.Project.start_date"],
    "Playlist": ["versions.Version.code", "versions.Version.sg_status_list", "versions.Version.frame_count",
                 "project.Project.name"],
    "Reply": ["entity.Note.subject", "entity.Note.sg_status_list", "entity.Note.project",
              "entity.Note.project.Project.name", "user.HumanUser.login"],
    "Step": [],
}

SORTABLE = {"number", "float", "text", "date", "date_time", "checkbox", "list", "status_list"}

# Every relation mockgun supports, per data type (protocol.md section 3), minus the known
# differences listed in SKIP_REASONS; the run must compare each at least once.
REQUIRED_COVERAGE = {
    "checkbox": ["is", "is_not"],
    "number": ["is", "is_not", "less_than", "greater_than", "between", "not_between", "in"],
    "float": ["is", "is_not", "less_than", "greater_than", "between", "in"],
    "date": ["is", "is_not", "less_than", "greater_than", "between", "in"],
    "date_time": ["is", "is_not", "less_than", "greater_than", "between", "in"],
    "list": ["is", "is_not", "in", "not_in"],
    "status_list": ["is", "is_not", "in", "not_in"],
    "entity_type": ["is"],
    "text": ["is", "is_not", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with"],
    "entity": ["is", "is_not", "in", "type_is", "type_is_not", "name_contains", "name_not_contains",
               "name_starts_with", "name_ends_with"],
    "multi_entity": ["is", "is_not"],
}


# -- mockgun set-up ---------------------------------------------------------------------------


def to_datetime(text):
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def load_mockgun(tmp_dir, data: dict, fields: dict, entities: dict) -> mockgun.Shotgun:
    """A mockgun instance over the fixture schema holding `data` as a site would show it."""
    schema_path, entity_path = tmp_dir / "schema.pickle", tmp_dir / "schema_entity.pickle"
    with open(schema_path, "wb") as fh:
        pickle.dump(fields, fh, protocol=2)
    with open(entity_path, "wb") as fh:
        pickle.dump(entities, fh, protocol=2)
    mockgun.Shotgun.set_schema_paths(str(schema_path), str(entity_path))
    mg = mockgun.Shotgun("http://mockgun.invalid/", script_name="diff", api_key="diff")

    retired = {(t, r["id"]) for t, records in data.items() for r in records if r.get("__retired")}
    for entity_type, records in data.items():
        table = mg._db[entity_type] = {}
        schema = fields[entity_type]
        for record in records:
            # A full row: every schema field null ([] for multi_entity), as the site loads
            # it (not mockgun's defaults), then the record's values in Python form.
            row = {"type": entity_type, "__retired": bool(record.get("__retired"))}
            for name, definition in schema.items():
                row[name] = [] if definition["data_type"]["value"] == "multi_entity" else None
            for name, value in record.items():
                if name == "__retired":
                    continue
                data_type = schema[name]["data_type"]["value"]
                if data_type == "entity" and value is not None:
                    value = None if (value["type"], value["id"]) in retired else dict(value)
                elif data_type == "multi_entity":
                    value = [dict(v) for v in value if (v["type"], v["id"]) not in retired]
                elif data_type == "date_time" and value is not None:
                    value = to_datetime(value)
                row[name] = value
            table[record["id"]] = row
    return mg


# -- normalization --------------------------------------------------------------------------------


def norm_value(value):
    """Comparable form of a result value: links as (type, id), datetimes as UTC text, lists of
    links sorted (multi_entity order is not specified) and deep multi_entity lists sorted."""
    if isinstance(value, _dt.datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict) and "type" in value and "id" in value:
        return ("link", value["type"], value["id"])
    if isinstance(value, (list, tuple)):
        return ("list",) + tuple(sorted((norm_value(v) for v in value), key=repr))
    return value


def norm_records(records, fields) -> list[dict]:
    keep = set(fields) | {"type", "id"}
    return [{k: norm_value(r.get(k, "<missing>")) for k in keep} for r in records]


def canonical_ties(records: list[dict], sort_fields: list[str]) -> list[dict]:
    """Order records that tie on every sort key by id: how a site breaks ties is not
    specified, but the sequence of sort keys must match."""
    out, run = [], []
    for r in records:
        if run and [r[f] for f in sort_fields] != [run[0][f] for f in sort_fields]:
            out += sorted(run, key=lambda x: x["id"])
            run = []
        run.append(r)
    return out + sorted(run, key=lambda x: x["id"])


# -- query generation ---------------------------------------------------------------------------


class Skip(Exception):
    """This query is a known mockgun difference; the argument is a SKIP_REASONS key."""


class QueryGenerator:
    """Builds random find() calls over the dataset."""

    def __init__(self, rng: random.Random, site: oracle.Site, data: dict, fields: dict):
        self.rng = rng
        self.site = site
        self.fields = fields
        self.direct = {}
        for entity_type, _ in QUERY_TYPES:
            present = set()
            for record in data[entity_type]:
                present.update(k for k, v in record.items() if k != "__retired")
            self.direct[entity_type] = sorted(present)
        self._pool_cache = {}

    # -- facts about paths ----------------------------------------------------------------

    def leaf_type(self, entity_type, path):
        owner, leaf, _ = self.site.path_info(entity_type, path)
        return self.site.data_type(owner, leaf)

    def hops(self, entity_type, path):
        """[(prefix path, link field data type, the type named after it)] for each hop."""
        parts, out, current = path.split("."), [], entity_type
        for i in range(0, len(parts) - 1, 2):
            prefix = ".".join(parts[:i + 1])
            out.append((prefix, self.site.data_type(current, parts[i]), parts[i + 1]))
            current = parts[i + 1]
        return out

    def through_multi(self, entity_type, path):
        return any(kind == "multi_entity" for _, kind, _ in self.hops(entity_type, path))

    def all_rows(self, entity_type):
        return self.site.records(entity_type) + self.site.records(entity_type, retired=True)

    def pool(self, entity_type, path):
        """Every value `path` takes on records of the type (links flattened), cached."""
        key = (entity_type, path)
        if key not in self._pool_cache:
            values, has_null = [], False
            for record in self.all_rows(entity_type):
                value = self.site.resolve(entity_type, record, path)
                items = value if isinstance(value, oracle.Many) else [value]
                if isinstance(value, oracle.Many) and any(v is None for v in value):
                    has_null = True
                for v in items:
                    if isinstance(v, list):
                        values.extend(v)
                    elif v is not None:
                        values.append(v)
            self._pool_cache[key] = (values, has_null)
        return self._pool_cache[key]

    def has_nulls(self, entity_type, field):
        return any(self.site.raw(entity_type, r, field) is None for r in self.all_rows(entity_type))

    def link_types(self, entity_type, path):
        """The link types a link-valued path actually holds in the data."""
        return sorted({v["type"] for v in self.pool(entity_type, path)[0]})

    def guards_for_path(self, entity_type, path):
        """Guards making every single-valued hop of `path` resolvable by mockgun."""
        guards = []
        for prefix, kind, named in self.hops(entity_type, path):
            if kind == "multi_entity":
                break
            if len(self.link_types(entity_type, prefix)) > 1:
                guards += [[prefix, "is_not", None], [prefix, "type_is", named]]
        return guards

    # -- values ---------------------------------------------------------------------------

    def swap_ascii_case(self, text):
        return "".join(c.swapcase() if c.isascii() else c for c in text)

    def text_value(self, entity_type, path, relation):
        values = self.pool(entity_type, path)[0]
        r = self.rng.random()
        if not values or r < 0.08:
            return self.rng.choice(["%", "_", "'", '"', "\\", "1=1", "zz_no_match", "0"])
        value = self.rng.choice(values)
        if relation in ("contains", "not_contains", "starts_with", "ends_with"):
            if relation == "starts_with":
                value = value[:self.rng.randint(1, min(6, len(value)))]
            elif relation == "ends_with":
                value = value[-self.rng.randint(1, min(6, len(value))):]
            else:
                start = self.rng.randrange(len(value))
                value = value[start:start + self.rng.randint(1, 5)]
        if self.rng.random() < 0.3:
            value = self.swap_ascii_case(value)
        return value

    def number_value(self, entity_type, path):
        values = self.pool(entity_type, path)[0]
        if not values or self.rng.random() < 0.1:
            return self.rng.randint(-10, 1200)
        value = self.rng.choice(values)
        return value + self.rng.choice([0, 0, 0, 1, -1])

    def float_value(self, entity_type, path):
        values = self.pool(entity_type, path)[0]
        if not values or self.rng.random() < 0.2:
            return round(self.rng.uniform(0, 30), 3)
        return self.rng.choice(values)

    def date_value(self, entity_type, path):
        values = self.pool(entity_type, path)[0]
        if not values or self.rng.random() < 0.2:
            return (_dt.date(2023, 10, 1) + _dt.timedelta(days=self.rng.randrange(900))).isoformat()
        return self.rng.choice(values)

    def datetime_value(self, entity_type, path):
        values = self.pool(entity_type, path)[0]
        if not values or self.rng.random() < 0.2:
            return _dt.datetime(2024, 1, 1, tzinfo=UTC) + _dt.timedelta(seconds=self.rng.randrange(400 * 86400))
        return to_datetime(self.rng.choice(values))

    def scalar_value(self, data_type, entity_type, path, relation="is"):
        if data_type == "text":
            return self.text_value(entity_type, path, relation)
        if data_type == "number":
            return self.number_value(entity_type, path)
        if data_type == "float":
            return self.float_value(entity_type, path)
        if data_type == "date":
            return self.date_value(entity_type, path)
        if data_type == "date_time":
            return self.datetime_value(entity_type, path)
        if data_type == "checkbox":
            return self.rng.random() < 0.5
        if data_type in ("list", "status_list", "entity_type"):
            owner, leaf, _ = self.site.path_info(entity_type, path)
            valid = self.fields[owner][leaf]["properties"].get("valid_values", {}).get("value") or []
            values = self.pool(entity_type, path)[0] + list(valid)
            return self.rng.choice(values) if values else "zz_no_match"
        raise AssertionError(data_type)

    def link_value(self, entity_type, path):
        """A link the field holds, or a record of one of its types (ids overlap across types)."""
        types = self.link_types(entity_type, path)
        values = self.pool(entity_type, path)[0]
        if values and self.rng.random() < 0.7:
            link = self.rng.choice(values)
            return {"type": link["type"], "id": link["id"]}
        if not types:
            owner, leaf, _ = self.site.path_info(entity_type, path)
            types = self.fields[owner][leaf]["properties"]["valid_types"]["value"][:1]
        link_type = self.rng.choice(types)
        ids = [r["id"] for r in self.site.records(link_type)] or [1]
        return {"type": link_type, "id": self.rng.choice(ids)}

    # -- conditions -----------------------------------------------------------------------

    def condition(self, entity_type, path):
        """(condition, guards) for a random relation on `path`; raises Skip."""
        data_type = self.leaf_type(entity_type, path)
        guards = self.guards_for_path(entity_type, path)
        nullable = [[path, "is_not", None]]
        multi = self.through_multi(entity_type, path)
        rng = self.rng
        if rng.random() < 0.08 and data_type != "checkbox":
            relation = rng.choice(["is", "is_not"])
            if data_type == "entity_type" and relation != "is":
                raise Skip("entity_type_relations")
            return [path, relation, None], guards

        if data_type == "text":
            relation = rng.choice(["is", "is_not", "in", "not_in", "contains", "not_contains",
                                   "starts_with", "ends_with"])
            if relation in ("in", "not_in"):
                value = [self.text_value(entity_type, path, "is") for _ in range(rng.randint(1, 4))]
            else:
                value = self.text_value(entity_type, path, relation)
            return [path, relation, value], guards

        if data_type in ("number", "float", "date", "date_time"):
            relation = rng.choice(["is", "is_not", "less_than", "greater_than", "between", "between",
                                   "not_between", "in", "in", "not_in", "in_last"])
            if relation == "not_in":
                raise Skip("scalar_not_in")
            if relation == "in_last":
                if data_type in ("date", "date_time"):
                    raise Skip("relative_dates")
                relation = "greater_than"
            if relation == "not_between" and data_type != "number":
                raise Skip("not_between_float_date")
            value_of = lambda: self.scalar_value(data_type, entity_type, path)  # noqa: E731
            if relation in ("is", "is_not"):
                return [path, relation, value_of()], guards
            if relation == "in":
                return [path, "in", [value_of() for _ in range(rng.randint(1, 4))]], guards
            if multi and self.pool(entity_type, path)[1]:
                raise Skip("multi_null_compare")
            if relation in ("between", "not_between"):
                low, high = sorted([value_of(), value_of()])
                return [path, relation, [low, high]], guards + nullable
            return [path, relation, value_of()], guards + nullable

        if data_type == "checkbox":
            return [path, rng.choice(["is", "is_not"]), rng.random() < 0.5], guards

        if data_type in ("list", "status_list"):
            relation = rng.choice(["is", "is_not", "in", "not_in"])
            if relation in ("in", "not_in"):
                return [path, relation, [self.scalar_value(data_type, entity_type, path)
                                         for _ in range(rng.randint(1, 3))]], guards
            return [path, relation, self.scalar_value(data_type, entity_type, path)], guards

        if data_type == "entity_type":
            relation = rng.choice(["is", "is", "is", "is_not", "in"])
            if relation != "is":
                raise Skip("entity_type_relations")
            return [path, "is", self.scalar_value(data_type, entity_type, path)], guards

        if data_type == "entity":
            relation = rng.choice(["is", "is", "is_not", "type_is", "type_is_not", "in", "in",
                                   "not_in", "name_contains", "name_not_contains", "name_starts_with",
                                   "name_ends_with", "name_is"])
            if relation in ("is", "is_not"):
                return [path, relation, self.link_value(entity_type, path)], guards
            if relation == "not_in":
                raise Skip("entity_not_in")
            if relation == "name_is":
                raise Skip("entity_name_is")
            if relation == "in":
                count = rng.choice([1, 1, 2])
                if count > 1:
                    raise Skip("entity_in_many")
                return [path, "in", [self.link_value(entity_type, path)]], guards + nullable
            if relation in ("type_is", "type_is_not"):
                types = self.link_types(entity_type, path) or ["Shot"]
                return [path, relation, rng.choice(types + ["Asset"])], guards + nullable
            return self.name_condition(entity_type, path, relation), guards + nullable

        if data_type == "multi_entity":
            relation = rng.choice(["is", "is", "is_not", "is_not", "in", "type_is", "name_contains"])
            if relation not in ("is", "is_not"):
                raise Skip("multi_other_relations")
            if len(self.link_types(entity_type, path)) > 1:
                raise Skip("multi_mixed_types")
            return [path, relation, self.link_value(entity_type, path)], guards

        raise AssertionError("not generated: %s" % data_type)

    def name_condition(self, entity_type, path, relation):
        types = self.link_types(entity_type, path)
        for link_type in types:
            schema = self.fields[link_type]
            mockgun_field = "name" if "name" in schema else "code" if "code" in schema else None
            if mockgun_field is None or mockgun_field != self.site.display_field(link_type):
                raise Skip("name_field")
        names = [self.site.display_name(t, r["id"]) for t in types for r in self.site.records(t)]
        names = [n for n in names if n] or ["zz_no_match"]
        kind = relation.replace("name_", "").replace("not_", "")
        value = self.rng.choice(names)
        if kind == "starts_with":
            value = value[:self.rng.randint(1, min(6, len(value)))]
        elif kind == "ends_with":
            value = value[-self.rng.randint(1, min(6, len(value))):]
        else:
            start = self.rng.randrange(len(value))
            value = value[start:start + self.rng.randint(1, 5)]
        if self.rng.random() < 0.3:
            value = self.swap_ascii_case(value)
        sensitive = {n for n in names if self._name_match(kind, n, value)}
        insensitive = {n for n in names if self._name_match(kind, n.lower(), value.lower())}
        if sensitive != insensitive:
            raise Skip("name_case")
        return [path, relation, value]

    @staticmethod
    def _name_match(kind, name, value):
        return {"contains": value in name, "starts_with": name.startswith(value),
                "ends_with": name.endswith(value)}[kind]

    # -- whole queries --------------------------------------------------------------------

    def filter_path(self, entity_type):
        deep = DEEP_PATHS[entity_type]
        if deep and self.rng.random() < 0.35:
            return self.rng.choice(deep)
        candidates = [f for f in self.direct[entity_type]
                      if self.site.data_type(entity_type, f) in MOCKGUN_FILTERABLE]
        return self.rng.choice(candidates)

    def query(self):
        """A random query: dict(entity_type, filters, fields, order, mockgun_order,
        filter_operator, retired_only, limit, sort_fields, text_sort_fields)."""
        rng = self.rng
        entity_type = rng.choices([t for t, _ in QUERY_TYPES], [w for _, w in QUERY_TYPES])[0]
        conditions, relations = [], []
        for _ in range(rng.choices([0, 1, 2, 3, 4], [6, 36, 32, 18, 8])[0]):
            path = self.filter_path(entity_type)
            condition, guards = self.condition(entity_type, path)
            relations.append("%s %s" % (self.leaf_type(entity_type, path), condition[1]))
            if guards:
                condition = {"filter_operator": "all", "filters": guards + [condition]}
            conditions.append(condition)
        if len(conditions) >= 3 and rng.random() < 0.5:
            # Nest some conditions in a sub-group of the other kind.
            k = rng.randint(2, len(conditions) - 1)
            conditions = conditions[:-k] + [{"filter_operator": rng.choice(["any", "all"]),
                                             "filters": conditions[-k:]}]
        operator = rng.choice(["all", "any"]) if len(conditions) > 1 else None

        top_guards = []
        fields = rng.sample(self.direct[entity_type], min(len(self.direct[entity_type]), rng.randint(1, 5)))
        if DEEP_PATHS[entity_type] and rng.random() < 0.5:
            for path in rng.sample(DEEP_PATHS[entity_type], rng.randint(1, 2)):
                fields.append(path)
                top_guards += self.guards_for_path(entity_type, path)

        order, mockgun_order, sort_fields, text_sorts = None, None, [], []
        if rng.random() < 0.4:
            order = []
            for _ in range(rng.choice([1, 1, 1, 2])):
                if rng.random() < 0.05 and DEEP_PATHS[entity_type]:
                    raise Skip("sort_deep")
                # Mostly fields mockgun can sort; sometimes any field, so that the
                # skipped kinds are seen and counted too.
                candidates = self.direct[entity_type]
                if rng.random() < 0.85:
                    candidates = [f for f in candidates if self.site.data_type(entity_type, f) in SORTABLE]
                field = rng.choice(candidates)
                data_type = self.site.data_type(entity_type, field)
                if data_type in ("entity", "multi_entity"):
                    raise Skip("sort_entity")
                if data_type not in SORTABLE:
                    raise Skip("sort_unfilterable")
                if field in sort_fields:
                    continue
                order.append({"field_name": field, "direction": rng.choice(["asc", "desc"])})
                sort_fields.append(field)
                if data_type == "text":
                    text_sorts.append(field)
                if self.has_nulls(entity_type, field):
                    # mockgun sorts None as 0 / "" / datetime.min (or crashes), and where a
                    # site puts nulls is not specified: keep them out.
                    top_guards.append([field, "is_not", None])
                if field not in fields:
                    fields.append(field)
            # mockgun applies sort keys one after another, so its LAST key ends up primary
            # (a bug); give it the keys reversed to ask for the same order.
            mockgun_order = list(reversed(order))

        if top_guards:
            dedup = []
            for g in top_guards:
                if g not in dedup:
                    dedup.append(g)
            if operator == "any":
                conditions = dedup + [{"filter_operator": "any", "filters": conditions}]
                operator = None
            else:
                conditions = dedup + conditions
        limit = rng.randint(1, 25) if order is None and rng.random() < 0.1 else 0
        return {"entity_type": entity_type, "filters": conditions, "fields": fields, "order": order,
                "mockgun_order": mockgun_order, "filter_operator": operator,
                "retired_only": rng.random() < 0.1, "limit": limit, "sort_fields": sort_fields,
                "text_sorts": text_sorts, "relations": relations}


def text_collation_ambiguous(values) -> bool:
    """Whether these sort values could order differently under code-point and
    case-insensitive collation (or involve non-ASCII text)."""
    distinct = sorted(set(values))
    if any(not v.isascii() for v in distinct):
        return True
    if len({v.lower() for v in distinct}) != len(distinct):
        return True
    return sorted(distinct, key=str.lower) != distinct


def describe(q) -> str:
    args = "%r, %r, %r" % (q["entity_type"], q["filters"], q["fields"])
    for key in ("order", "filter_operator", "retired_only", "limit"):
        if q[key]:
            args += ", %s=%r" % (key, q[key])
    return "sg.find(%s)" % args


# -- the test ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mg(dataset, schema, tmp_path_factory):
    return load_mockgun(tmp_path_factory.mktemp("mockgun"), dataset, schema[0], schema[1])


def filter_paths(filters):
    for f in filters:
        if isinstance(f, dict):
            yield from filter_paths(f["filters"])
        else:
            yield f[0]


def touches_retired(site, entity_type, record, path) -> bool:
    """Whether following `path` from `record` crosses a link to a retired record."""
    parts = path.split(".")
    if len(parts) < 2 and site.data_type(entity_type, parts[0]) not in ("entity", "multi_entity"):
        return False
    value = record.get(parts[0])
    links = value if isinstance(value, list) else [value] if value else []
    for link in links:
        target = site.rows[link["type"]].get(link["id"])
        if target is None or target.get("__retired"):
            return True
        if len(parts) > 2 and link["type"] == parts[1] and touches_retired(
                site, parts[1], target, ".".join(parts[2:])):
            return True
    return False


def explain(q, got, expected, site) -> str:
    """A likely cause for a mismatch, only to group them in the report (a heuristic)."""
    if not isinstance(got, list):
        return "the site raised a fault"
    got_ids, expected_ids = {r["id"] for r in got}, {r["id"] for r in expected}
    # With a limit, one record wrongly in pushes a right one out: look at the intruders.
    differing = (got_ids - expected_ids) if q["limit"] else (got_ids ^ expected_ids)
    paths = set(filter_paths(q["filters"]))
    rows = site.rows[q["entity_type"]]
    if differing and all(any(touches_retired(site, q["entity_type"], rows[i], p) for p in paths)
                         for i in differing):
        return ("every record in or out by mistake has a link to a retired record on a filtered "
                "path: the site's filters do not treat such links as hidden")
    checkbox = [p for p in paths | set(q["fields"]) if site.data_type(
        *site.path_info(q["entity_type"], p)[:2]) == "checkbox"]
    if checkbox:
        return "involves a checkbox path (is a null checkbox read as false?)"
    return "other"


def test_mockgun_loaded_like_the_site(mg, site):
    """Sanity: the mockgun copy holds the same live and retired records."""
    for entity_type, _ in QUERY_TYPES:
        assert [r["id"] for r in mg.find(entity_type, [])] == [r["id"] for r in site.records(entity_type)]
        assert ([r["id"] for r in mg.find(entity_type, [], retired_only=True)]
                == [r["id"] for r in site.records(entity_type, retired=True)])


def test_random_finds_match_mockgun(sg, mg, site, dataset, schema, capsys):
    """At least TARGET random finds give the same records from the site and from mockgun.

    The report (counts, skips per reason, mismatches grouped by likely cause) is printed to
    the terminal whether the test passes or not."""
    rng = random.Random(SEED)
    report = []
    say = report.append
    with capsys.disabled():
        print("\nmockgun differential: seed %d (set COMPAT_DIFF_SEED to replay), target %d queries"
              % (SEED, TARGET))
    generator = QueryGenerator(rng, site, dataset, schema[0])
    skipped, compared, mismatches, relations = Counter(), 0, [], Counter()
    started = time.time()
    attempts, mockgun_time, site_time = 0, 0.0, 0.0
    while compared < TARGET:
        attempts += 1
        assert attempts < TARGET * 4, "too many skipped queries: %s" % dict(skipped)
        try:
            q = generator.query()
        except Skip as skip:
            skipped[skip.args[0]] += 1
            continue

        t0 = time.time()
        try:
            expected = mg.find(q["entity_type"], copy.deepcopy(q["filters"]), list(q["fields"]),
                               order=copy.deepcopy(q["mockgun_order"]), filter_operator=q["filter_operator"],
                               retired_only=q["retired_only"])
        except Exception as error:  # the generator must avoid every case mockgun cannot run
            raise AssertionError("mockgun failed on a generated query (a bug in this test): %s\n%r"
                                 % (describe(q), error)) from error
        mockgun_time += time.time() - t0
        if q["limit"]:
            expected = expected[:q["limit"]]  # mockgun ignores limit
        expected = norm_records(expected, q["fields"])
        if q["text_sorts"] and text_collation_ambiguous([r[f] for r in expected for f in q["text_sorts"]]):
            skipped["sort_text_collation"] += 1
            continue

        t0 = time.time()
        try:
            got = sg.find(q["entity_type"], copy.deepcopy(q["filters"]), list(q["fields"]),
                          order=copy.deepcopy(q["order"]), filter_operator=q["filter_operator"],
                          retired_only=q["retired_only"], limit=q["limit"])
            got = norm_records(got, q["fields"])
        except shotgun_api3.Fault as fault:
            got = "Fault: %s" % fault
        site_time += time.time() - t0
        compared += 1
        relations.update(q["relations"])
        if q["order"] and isinstance(got, list):
            got = canonical_ties(got, q["sort_fields"])
            expected = canonical_ties(expected, q["sort_fields"])
        if got != expected:
            mismatches.append((q, expected, got))

    elapsed = time.time() - started
    say("compared %d queries in %.1fs (%d generated); %d mismatches" % (
        compared, elapsed, attempts, len(mismatches)))
    say("skipped %d:" % sum(skipped.values()))
    for reason, count in skipped.most_common():
        say("  %5d  %s: %s" % (count, reason, SKIP_REASONS[reason]))
    say("generated conditions compared, by data type and relation (guards not counted):")
    for key, count in sorted(relations.items()):
        say("  %5d  %s" % (count, key))
    say("time: mockgun %.1fs, site %.1fs" % (mockgun_time, site_time))
    causes = Counter()
    explained = []
    for q, expected, got in mismatches:
        cause = explain(q, got, expected, site)
        causes[cause] += 1
        explained.append((cause, q, expected, got))
    for cause, count in causes.most_common():
        say("mismatches: %5d  %s" % (count, cause))
    # Details: a few examples of each cause, unexplained ones first.
    shown = Counter()
    explained.sort(key=lambda item: item[0] != "other")
    for cause, q, expected, got in explained:
        if shown[cause] >= 3 or sum(shown.values()) >= MAX_MISMATCH_DETAILS:
            continue
        shown[cause] += 1
        say("MISMATCH (%s)\n  %s" % (cause, describe(q)))
        say("  expected (mockgun, %d): %s" % (len(expected), _short(expected)))
        say("  got      (site): %s" % _short(got))
        if isinstance(got, list):
            e_ids, g_ids = [r["id"] for r in expected], [r["id"] for r in got]
            if e_ids != g_ids:
                say("  ids only in expected: %s; only in got: %s" % (
                    sorted(set(e_ids) - set(g_ids))[:10], sorted(set(g_ids) - set(e_ids))[:10]))
            else:
                for e, g in zip(expected, got):
                    if e != g:
                        say("  first differing record:\n    expected %r\n    got      %r" % (e, g))
                        break
    with capsys.disabled():
        print("\n".join(report))
    assert compared >= TARGET
    assert set(skipped) <= set(SKIP_REASONS)
    missing = ["%s %s" % (t, r) for t, rels in REQUIRED_COVERAGE.items() for r in rels
               if relations["%s %s" % (t, r)] == 0]
    assert not missing, "relations never compared: %s" % missing
    if mismatches:
        pytest.fail("%d of %d random finds differ from mockgun; causes: %s (details printed above)"
                    % (len(mismatches), compared, dict(causes)), pytrace=False)


def _short(value, limit=600):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
