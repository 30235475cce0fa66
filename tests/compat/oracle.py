"""A small, slow, obviously-correct model of how a real site answers `read`.

The targeted tests in test_compat.py compute their expected results with this model, from
the same dataset the server was started with.  It implements the semantics the engine is
specified to follow (protocol.md section 2.1 and the brief):

- links come back as ``{"type", "id", "name"}`` with the linked record's display name;
  links to retired records are hidden (entity -> None, dropped from multi_entity lists),
  in results and in filters alike;
- text, list and status_list matching is case-insensitive;
- a deep path through an entity link is null when the link is null or of another type;
  through a multi_entity field a condition matches when ANY linked record of that type
  matches (an empty list matches nothing), and a deep return field gives the list of
  sub-values;
- the negative relations (is_not, not_in, not_contains, name_not_contains, type_is_not,
  not_between, not_in_last, ...) are the complement of their positive relation, so they
  match nulls;
- default order is id ascending; with sorts the first key is primary.

Where the result would depend on something not specified (sorting nulls, ordering text that
differs only in case), the model raises `Ambiguous` so that a test cannot silently assert
an arbitrary choice.
"""

from __future__ import annotations

import datetime as _dt

TEXTUAL = {"text", "list", "status_list", "entity_type", "color", "uuid"}
NUMERIC = {"number", "float", "duration", "percent", "currency", "timecode"}
DATES = {"date", "date_time"}

# Display-name field per type (brief: Task->content, Note->subject, Reply->content, users,
# projects, groups and departments -> name; an ApiUser, which has no `name`, by its
# firstname, the script's name), then code, name, title, content.
DISPLAY_OVERRIDES = {"Task": "content", "Note": "subject", "Reply": "content", "ApiUser": "firstname"}
NAME_TYPES = {"HumanUser", "ApiUser", "Project", "Group", "Department"}


class Ambiguous(Exception):
    """The expected answer depends on behaviour the specification leaves open."""


class Many(list):
    """The values of a deep path through a multi_entity field (one per linked record)."""


def client_values(condition: list) -> list:
    """The `values` list the client sends for a filter ``[path, relation, v1, v2, ...]``."""
    values = list(condition[2:])
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values = list(values[0])
    return [_wire_filter_value(v) for v in values]


def _wire_filter_value(value):
    """Filter values as the client puts them on the wire (dates become strings)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("use aware datetimes in tests")
        return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, dict) and "type" in value and "id" in value:
        return {"type": value["type"], "id": value["id"]}
    return value


class Site:
    """The dataset, queried the way a real site would answer."""

    def __init__(self, data: dict, fields: dict, today: _dt.date | None = None):
        self.fields = fields
        self.today = today or _dt.date.today()
        self.rows = {t: {r["id"]: r for r in records} for t, records in data.items()}

    # -- records and values ------------------------------------------------------------

    def data_type(self, entity_type: str, field: str) -> str:
        return self.fields[entity_type][field]["data_type"]["value"]

    def live(self, entity_type: str, entity_id: int) -> bool:
        record = self.rows.get(entity_type, {}).get(entity_id)
        return record is not None and not record.get("__retired", False)

    def records(self, entity_type: str, retired: bool = False) -> list[dict]:
        """Live (or only retired) records of a type, in id order."""
        rows = self.rows.get(entity_type, {})
        return [rows[i] for i in sorted(rows) if bool(rows[i].get("__retired", False)) == retired]

    def raw(self, entity_type: str, record: dict, field: str):
        """A field's stored value with retired links hidden; None/[] when not given."""
        data_type = self.data_type(entity_type, field)
        if field == "id":
            return record["id"]
        value = record.get(field)
        if data_type == "multi_entity":
            return [v for v in (value or []) if self.live(v["type"], v["id"])]
        if data_type == "entity" and value is not None and not self.live(value["type"], value["id"]):
            return None
        return value

    def display_field(self, entity_type: str) -> str | None:
        schema = self.fields[entity_type]
        if entity_type in DISPLAY_OVERRIDES:
            return DISPLAY_OVERRIDES[entity_type]
        if entity_type in NAME_TYPES and "name" in schema:
            return "name"
        for candidate in ("code", "name", "title", "content"):
            if candidate in schema:
                return candidate
        return None

    def display_name(self, entity_type: str, entity_id: int):
        field = self.display_field(entity_type)
        if field is None:
            raise Ambiguous("no display field for %s" % entity_type)
        return self.rows[entity_type][entity_id].get(field)

    def wire_link(self, value: dict) -> dict:
        return {"type": value["type"], "id": value["id"],
                "name": self.display_name(value["type"], value["id"])}

    def path_info(self, entity_type: str, path: str) -> tuple[str, str, bool]:
        """(type owning the leaf field, leaf field, whether the path crosses a multi_entity)."""
        parts = path.split(".")
        through_multi = False
        while len(parts) > 1:
            if self.data_type(entity_type, parts[0]) == "multi_entity":
                through_multi = True
            entity_type, parts = parts[1], parts[2:]
        return entity_type, parts[0], through_multi

    def resolve(self, entity_type: str, record: dict | None, path: str):
        """The value of `path` on `record`; a `Many` when the path crosses a multi_entity."""
        if record is None:
            return None
        parts = path.split(".", 2)
        if len(parts) == 1:
            return self.raw(entity_type, record, path)
        field, link_type, rest = parts
        value = self.raw(entity_type, record, field)
        if self.data_type(entity_type, field) == "multi_entity":
            out = Many()
            for item in value:
                if item["type"] == link_type:
                    sub = self.resolve(link_type, self.rows[link_type][item["id"]], rest)
                    out.extend(sub) if isinstance(sub, Many) else out.append(sub)
            return out
        if value is None or value["type"] != link_type:
            return None
        return self.resolve(link_type, self.rows[link_type][value["id"]], rest)

    # -- filters -----------------------------------------------------------------------

    def matches(self, entity_type: str, record: dict, filters, operator: str = "all") -> bool:
        results = (self._matches_one(entity_type, record, f) for f in filters)
        if operator in ("all", "and", None):
            return all(results)
        if operator in ("any", "or"):
            return any(results)
        raise ValueError(operator)

    def _matches_one(self, entity_type: str, record: dict, condition) -> bool:
        if isinstance(condition, dict):
            return self.matches(entity_type, record, condition["filters"], condition["filter_operator"])
        path, relation = condition[0], condition[1]
        values = client_values(condition)
        leaf_type, leaf, _ = self.path_info(entity_type, path)
        data_type = self.data_type(leaf_type, leaf)
        value = self.resolve(entity_type, record, path)
        if isinstance(value, Many):
            return any(self.test(data_type, v, relation, values) for v in value)
        return self.test(data_type, value, relation, values)

    NEGATIONS = {
        "is_not": "is", "not_in": "in", "not_contains": "contains",
        "name_not_contains": "name_contains", "type_is_not": "type_is",
        "not_between": "between", "not_in_last": "in_last", "not_in_next": "in_next",
    }

    def test(self, data_type: str, value, relation: str, values: list) -> bool:
        """Whether one field value satisfies `relation values`."""
        if relation in self.NEGATIONS:
            return not self.test(data_type, value, self.NEGATIONS[relation], values)
        if data_type == "multi_entity":
            return self._test_multi(value, relation, values)
        if data_type == "entity":
            return self._test_entity(value, relation, values)
        if relation == "is":
            return self._equal(data_type, value, values[0])
        if relation == "in":
            return any(self._equal(data_type, value, v) for v in values)
        if value is None:
            return False
        if data_type in TEXTUAL:
            v, needle = value.lower(), (values[0] or "").lower()
            if relation == "contains":
                return needle in v
            if relation == "starts_with":
                return v.startswith(needle)
            if relation == "ends_with":
                return v.endswith(needle)
        if data_type in NUMERIC or data_type in DATES:
            if relation == "less_than":
                return value < values[0]
            if relation == "greater_than":
                return value > values[0]
            if relation == "between":
                return values[0] <= value <= values[1]
        if data_type == "date":
            return self._test_relative_date(_dt.date.fromisoformat(value), relation, values)
        raise NotImplementedError("%s %s" % (data_type, relation))

    def _equal(self, data_type: str, value, wanted) -> bool:
        if value is None or wanted is None:
            return value is None and wanted is None
        if data_type in ("text", "list", "status_list"):
            return value.lower() == wanted.lower()
        return value == wanted

    def _test_entity(self, value, relation: str, values: list) -> bool:
        if relation == "is":
            return self._same_link(value, values[0])
        if relation == "in":
            return any(self._same_link(value, v) for v in values)
        if value is None:
            return False
        if relation == "type_is":
            return value["type"] == values[0]
        name = (self.display_name(value["type"], value["id"]) or "").lower()
        needle = (values[0] or "").lower()
        if relation == "name_contains":
            return needle in name
        if relation == "name_is":
            return name == needle
        if relation == "name_starts_with":
            return name.startswith(needle)
        if relation == "name_ends_with":
            return name.endswith(needle)
        raise NotImplementedError("entity %s" % relation)

    def _test_multi(self, value: list, relation: str, values: list) -> bool:
        if relation == "is":
            if values[0] is None:
                return not value
            return any(self._same_link(v, values[0]) for v in value)
        if relation == "in":
            return any(self._same_link(v, w) for v in value for w in values)
        return any(self._test_entity(v, relation, values) for v in value)

    @staticmethod
    def _same_link(value, wanted) -> bool:
        if value is None or wanted is None:
            return value is None and wanted is None
        return (value["type"], value["id"]) == (wanted["type"], wanted["id"])

    def _test_relative_date(self, value: _dt.date, relation: str, values: list) -> bool:
        today = self.today
        if relation in ("in_last", "in_next"):
            n, unit = values
            days = {"DAY": 1, "WEEK": 7}.get(unit)
            if days is None:
                raise Ambiguous("in_last/in_next with %s" % unit)
            if relation == "in_last":
                return today - _dt.timedelta(days=n * days) <= value <= today
            return today <= value <= today + _dt.timedelta(days=n * days)
        offset = values[0]
        if relation == "in_calendar_day":
            return value == today + _dt.timedelta(days=offset)
        if relation == "in_calendar_month":
            month = today.year * 12 + today.month - 1 + offset
            return (value.year, value.month) == (month // 12, month % 12 + 1)
        if relation == "in_calendar_year":
            return value.year == today.year + offset
        raise NotImplementedError(relation)

    # -- find ----------------------------------------------------------------------------

    def wire(self, entity_type: str, path: str, value):
        """A resolved value as it appears in a result."""
        leaf_type, leaf, _ = self.path_info(entity_type, path)
        data_type = self.data_type(leaf_type, leaf)
        if isinstance(value, Many):
            return [self._wire_scalar(data_type, v) for v in value]
        return self._wire_scalar(data_type, value)

    def _wire_scalar(self, data_type: str, value):
        if value is None:
            return [] if data_type == "multi_entity" else None
        if data_type == "entity":
            return self.wire_link(value)
        if data_type == "multi_entity":
            return [self.wire_link(v) for v in value]
        return value

    def find(self, entity_type, filters, fields=None, order=None, filter_operator=None,
             limit=0, retired_only=False, page=0) -> list[dict]:
        """What `Shotgun.find` returns, in wire form (date_time values stay strings)."""
        rows = [r for r in self.records(entity_type, retired=retired_only)
                if self.matches(entity_type, r, filters, filter_operator or "all")]
        if order:
            for sort in reversed(order):
                rows = self._sorted(entity_type, rows, sort)
        if limit and page:
            rows = rows[(page - 1) * limit:page * limit]
        elif page:
            rows = rows[(page - 1) * 500:page * 500]
        elif limit:
            rows = rows[:limit]
        out = []
        for r in rows:
            item = {"type": entity_type, "id": r["id"]}
            for f in fields or []:
                if f not in ("type", "id"):
                    item[f] = self.wire(entity_type, f, self.resolve(entity_type, r, f))
            out.append(item)
        return out

    def _sorted(self, entity_type: str, rows: list, sort: dict) -> list:
        path, direction = sort["field_name"], sort.get("direction", "asc")
        leaf_type, leaf, through_multi = self.path_info(entity_type, path)
        data_type = self.data_type(leaf_type, leaf)
        if through_multi or data_type in ("multi_entity", "entity"):
            raise Ambiguous("sorting on %s (%s)" % (path, data_type))
        keys = {}
        for r in rows:
            value = self.resolve(entity_type, r, path)
            if value is None:
                raise Ambiguous("null %s in a sorted result" % path)
            keys[r["id"]] = value
        if data_type in TEXTUAL:
            folded = {}
            for value in keys.values():
                if not value.isascii():
                    raise Ambiguous("sorting non-ASCII text %r" % value)
                if folded.setdefault(value.lower(), value) != value:
                    raise Ambiguous("sorting %r and %r, which differ only in case" % (folded[value.lower()], value))
            keys = {k: v.lower() for k, v in keys.items()}
        return sorted(rows, key=lambda r: keys[r["id"]], reverse=direction == "desc")
