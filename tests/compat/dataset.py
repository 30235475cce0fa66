"""A deterministic generator of a realistic production, for the compatibility suite.

`generate(seed, today)` returns ``{"EntityType": [record, ...], ...}`` in the format the
simulated site loads with ``shotgun-cache sim --load``: every record is
``{"id": int, "__retired": bool (only when true), "<field>": <wire value>, ...}``, fields
that are left out are null (multi_entity: ``[]``).

Wire values: text/list/status_list/color/uuid/entity_type are strings, number/duration/
percent ints, float floats, checkbox bools, date ``"YYYY-MM-DD"``, date_time
``"YYYY-MM-DDTHH:MM:SSZ"`` (UTC), entity ``{"type", "id"}`` or None and multi_entity a list
of ``{"type", "id"}`` (kept sorted by (type, id)).

The production is small but shaped like a real one: projects, sequences, shots, assets,
pipeline steps, tasks with assignees (users and groups), versions with published files,
notes with replies, playlists and users.  It deliberately contains the awkward cases a
cache must get right:

- nulls in most fields, zero and negative numbers next to nulls;
- retired records, and live records that link to retired ones;
- the same text in different cases, unicode text, and strings that look like SQL
  (``%``, ``_``, quotes, ``'; DROP TABLE ...``);
- polymorphic links (Task.entity is a Shot or an Asset, created_by a HumanUser or an
  ApiUser) whose ids overlap across types (every type numbers its ids from 1);
- a few dates relative to ``today`` so the relative date relations have something to find;
- both sides of the links a site keeps in step (Note.replies and Reply.entity, Group.users
  and HumanUser.groups, Version.published_files and PublishedFile.version).

The same (seed, today) always gives the same dataset.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
from pathlib import Path

DEFAULT_SEED = 20240611

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIELDS_JSON = FIXTURES / "site-schema.fields.json"
ENTITIES_JSON = FIXTURES / "site-schema.entities.json"

# Text that a cache built on SQL must treat as plain data.
SQLISH_TEXT = [
    "100% done",
    "50%",
    "under_score",
    "a_b",
    "O'Brien's shot",
    'say "hi"',
    "' OR 1=1 --",
    "'; DROP TABLE Shot; --",
    "back\\slash",
    "percent % and underscore _ together",
]

# Unicode text; non-ASCII letters here are lower case only (no case pairs), so that
# case-insensitive matching is not confused with unicode case folding, which has its
# own targeted test on CustomEntity01.
UNICODE_TEXT = [
    "café crème",
    "naïve façade",
    "日本語のショット",
    "ελληνικά",
    "smörgåsbord",
    "emoji 🎬 take",
]

PLAIN_DESCRIPTIONS = [
    "Hero walks in",
    "hero walks out",
    "HERO RUNS",
    "Fire and smoke",
    "fire sim",
    "FIRE",
    "Wide establishing shot",
    "Close up on the eyes",
    "Crowd cheering",
    "Matte painting extension",
    "Rain on window",
    "Explosion in background",
]

FIRST_NAMES = [
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
    "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter",
    "José", "Zoë", "Ørjan", "Łukasz", "Chloé", "Sean",
]
LAST_NAMES = [
    "Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Thomas", "Roberts", "García",
    "Müller", "O'Brien", "Dubois", "Nakamura", "Kowalski", "Ng",
]

STEPS = [
    # code, short_name, entity_type, color
    ("Layout", "LAY", "Shot", "50,149,253"),
    ("Animation", "ANM", "Shot", "210,50,50"),
    ("Lighting", "LGT", "Shot", "255,200,0"),
    ("Comp", "CMP", "Shot", "0,180,90"),
    ("Model", "MOD", "Asset", "120,120,255"),
    ("Rig", "RIG", "Asset", "200,0,200"),
    ("Surface", "SRF", "Asset", "90,90,90"),
    ("FX", "FX", "Shot", "255,128,0"),
]

ASSET_TYPES = ["Character", "Vehicle", "Prop", "Environment", "Matte Painting"]
ASSET_NAMES = [
    "Bob", "Alice", "Tree_Oak", "tree_pine", "Car_Red", "car_blue", "Rock", "ROCK_big",
    "Castle", "Dragon", "Sword", "Shield", "Forest", "City_Block", "Boat", "Bird",
    "Lamp", "Chair", "Table", "Mountain",
]

TASK_STATUSES = ["fin", "ip", "hld", "rdy", "wtg"]
SHOT_STATUSES = ["cbb", "fin", "ip", "omt", "hld", "rdy", "wtg"]
ASSET_STATUSES = ["fin", "ip", "omt", "hld", "rdy", "wtg"]
SEQ_STATUSES = ["fin", "ip", "omt", "hld"]
VERSION_STATUSES = ["na", "rev", "vwd"]
NOTE_STATUSES = ["clsd", "ip", "opn"]
NOTE_TYPES = ["Internal", "Client"]
USER_STATUSES = ["act", "dis"]
PROJECT_STATUS = ["Bidding", "Active", "Lost", "Hold"]
HOME_PAGES = ["home", "inbox", "my_tasks"]


def link(entity_type: str, entity_id: int) -> dict:
    """A link as the dataset stores it."""
    return {"type": entity_type, "id": entity_id}


def links(items) -> list:
    """A multi_entity value: unique links sorted by (type, id)."""
    seen = {(i["type"], i["id"]) for i in items}
    return [link(t, i) for t, i in sorted(seen)]


def fmt_date(d: _dt.date) -> str:
    return d.strftime("%Y-%m-%d")


def fmt_datetime(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Builder:
    """Holds the random source and the records being built."""

    def __init__(self, seed: int, today: _dt.date):
        self.rng = random.Random(seed)
        self.today = today
        self.data: dict[str, list[dict]] = {}

    # -- small helpers -----------------------------------------------------------------

    def add(self, entity_type: str, fields: dict, retired: bool = False) -> dict:
        records = self.data.setdefault(entity_type, [])
        record = {"id": len(records) + 1}
        record.update(fields)
        if retired:
            record["__retired"] = True
        records.append(record)
        return record

    def maybe(self, value, null_rate: float):
        """`value`, or None with probability `null_rate`."""
        return None if self.rng.random() < null_rate else value

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def datetime_2024(self) -> str:
        start = _dt.datetime(2024, 1, 1, 0, 0, 0)
        offset = self.rng.randrange(0, 365 * 24 * 3600)
        return fmt_datetime(start + _dt.timedelta(seconds=offset))

    def date_2024(self) -> str:
        return fmt_date(_dt.date(2024, 1, 1) + _dt.timedelta(days=self.rng.randrange(0, 540)))

    def description(self) -> str:
        pool = self.rng.choice([PLAIN_DESCRIPTIONS, PLAIN_DESCRIPTIONS, SQLISH_TEXT, UNICODE_TEXT])
        return self.rng.choice(pool)

    def live_ids(self, entity_type: str) -> list[int]:
        return [r["id"] for r in self.data.get(entity_type, []) if not r.get("__retired")]

    def all_ids(self, entity_type: str) -> list[int]:
        return [r["id"] for r in self.data.get(entity_type, [])]

    # -- the production ----------------------------------------------------------------

    def build(self) -> dict:
        rng = self.rng
        for code, name in [("anim", "Animation"), ("lgt", "Lighting"), ("comp", "Compositing"),
                           ("model", "Modeling"), ("prod", "Production")]:
            self.add("Department", {"code": code, "name": name, "color": "0,0,%d" % rng.randrange(256),
                                    "list_order": rng.randrange(10)})
        for code in ["Artists", "Supervisors", "Clients", "Coordinators"]:
            self.add("Group", {"code": code})

        # Users: ids 1..40; two retired; names with unicode and quotes; logins ASCII.
        used_names = set()
        for n in range(40):
            while True:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                if (first, last) not in used_names:
                    used_names.add((first, last))
                    break
            login = "%s.%s%d" % (first.lower(), last.lower().replace("'", ""), n)
            login = login.encode("ascii", "ignore").decode() or "user%d" % n
            self.add("HumanUser", {
                "firstname": first,
                "lastname": last,
                "name": "%s %s" % (first, last),
                "login": login,
                "email": self.maybe("%s@example.invalid" % login, 0.2),
                "sg_status_list": rng.choice(USER_STATUSES),
                "department": self.maybe(link("Department", rng.randint(1, 5)), 0.25),
                "password_strength": self.maybe(round(rng.uniform(0, 1), 3), 0.3),
                "home_page": self.maybe(rng.choice(HOME_PAGES), 0.3),
                "groups": links(link("Group", g) for g in rng.sample(range(1, 5), rng.randint(0, 2))),
                "email_notes": rng.random() < 0.5,
            }, retired=n in (7, 23))
        for name in ["Toolkit", "event_daemon", "ingest"]:
            self.add("ApiUser", {"firstname": name, "description": "script %s" % name,
                                 "generate_event_log_entries": name != "ingest"})

        # Projects: the fourth is retired; ids 1..4.
        project_names = ["Big Buck", "Sintel", "Ελληνικά Project", "Old Retired Show"]
        for n, name in enumerate(project_names):
            start = _dt.date(2023, 1, 1) + _dt.timedelta(days=60 * n)
            self.add("Project", {
                "name": name,
                "sg_status": PROJECT_STATUS[n % len(PROJECT_STATUS)],
                "sg_description": self.maybe(self.description(), 0.3),
                "start_date": fmt_date(start),
                "end_date": self.maybe(fmt_date(start + _dt.timedelta(days=400)), 0.3),
                "archived": False,
                "color": "%d,%d,%d" % (rng.randrange(256), rng.randrange(256), rng.randrange(256)),
                "users": links(link("HumanUser", u) for u in rng.sample(range(1, 41), 8)),
            }, retired=n == 3)
        live_projects = [1, 2, 3]

        for n, (code, short, etype, color) in enumerate(STEPS):
            self.add("Step", {"code": code, "short_name": short, "entity_type": etype,
                              "color": color, "list_order": n + 1,
                              "description": self.maybe(self.description(), 0.5)})
        shot_steps = [n + 1 for n, s in enumerate(STEPS) if s[2] == "Shot"]
        asset_steps = [n + 1 for n, s in enumerate(STEPS) if s[2] == "Asset"]

        # Sequences: 8 per live project plus two on the retired one; some retired.
        for p in live_projects + [4]:
            for n in range(8 if p != 4 else 2):
                code = "SQ%03d" % ((n + 1) * 10)
                if p == 2 and n == 3:
                    code = code.lower()  # a lower-case code among upper-case ones
                self.add("Sequence", {
                    "code": code,
                    "project": link("Project", p),
                    "sg_status_list": self.maybe(rng.choice(SEQ_STATUSES), 0.1),
                    "description": self.maybe(self.description(), 0.4),
                    "sg_due_1": self.maybe(self.date_2024(), 0.3),
                }, retired=(p == 4) or (p == 1 and n == 5))
        sequences = self.data["Sequence"]

        # Assets: about 50 per live project.
        for p in live_projects:
            for n in range(52):
                base = ASSET_NAMES[n % len(ASSET_NAMES)]
                code = "%s_%02d" % (base, n // len(ASSET_NAMES) + 1)
                if p == 3 and n == 4:
                    code = "Größe_Tür"  # unicode code
                self.add("Asset", {
                    "code": code,
                    "project": link("Project", p),
                    "sg_asset_type": self.maybe(rng.choice(ASSET_TYPES), 0.1),
                    "sg_status_list": self.maybe(rng.choice(ASSET_STATUSES), 0.1),
                    "description": self.maybe(self.description(), 0.4),
                    "created_at": self.datetime_2024(),
                    "created_by": self.creator(),
                }, retired=self.chance(0.04))
        assets_by_project = {p: [a["id"] for a in self.data["Asset"] if a["project"]["id"] == p]
                             for p in live_projects}

        # Shots: about 30 per sequence, codes SQ010_0010...; a few lower case; some with
        # no sequence; assets linked from the same project (and the reverse link kept).
        asset_shots: dict[int, list] = {}
        for seq in sequences:
            project_id = seq["project"]["id"]
            count = 30 if project_id != 4 else 4
            for n in range(count):
                code = "%s_%04d" % (seq["code"].upper(), (n + 1) * 10)
                if self.chance(0.05):
                    code = code.lower()
                cut_in = self.maybe(rng.choice([1001, 1001, 1009, 0, -8, rng.randrange(900, 1100)]), 0.1)
                cut_out = None if cut_in is None else self.maybe(cut_in + rng.randrange(0, 240), 0.05)
                shot_assets = []
                if project_id in assets_by_project:
                    shot_assets = rng.sample(assets_by_project[project_id], rng.choice([0, 0, 1, 2, 3, 4]))
                created = self.datetime_2024()
                shot = self.add("Shot", {
                    "code": code,
                    "sg_sequence": self.maybe(link("Sequence", seq["id"]), 0.05),
                    "project": link("Project", project_id),
                    "sg_status_list": self.maybe(rng.choice(SHOT_STATUSES), 0.05),
                    "sg_cut_in": cut_in,
                    "sg_cut_out": cut_out,
                    "sg_cut_duration": None if cut_out is None else cut_out - cut_in + 1,
                    "head_in": self.maybe(rng.randrange(-10, 20), 0.5),
                    "sg_cut_order": self.maybe(n + 1, 0.2),
                    "description": self.maybe(self.description(), 0.2),
                    "created_at": created,
                    "updated_at": self.maybe(created if self.chance(0.2) else self.datetime_2024(), 0.1),
                    "created_by": self.creator(),
                    "assets": links(link("Asset", a) for a in shot_assets),
                }, retired=self.chance(0.03) or project_id == 4)
                for a in shot_assets:
                    asset_shots.setdefault(a, []).append(link("Shot", shot["id"]))
        for asset in self.data["Asset"]:
            asset["shots"] = links(asset_shots.get(asset["id"], []))

        # Tasks: two per shot (shot steps), two or three per asset (asset steps).
        human_users = self.all_ids("HumanUser")
        task_contents = {
            "Layout": ["Layout", "layout"], "Animation": ["Animation", "anim v2", "ANIM blocking"],
            "Lighting": ["Lighting", "light - key"], "Comp": ["Comp", "comp - final", "Comp 100%"],
            "Model": ["Model", "model_hi"], "Rig": ["Rig", "rig_face"], "Surface": ["Surface"],
            "FX": ["FX", "fx_sim", "FX 'explosion'"],
        }
        relative_days = [-400, -10, -10, 0, 0, 10, 10, 400]
        for kind, records, steps, count in [("Shot", self.data["Shot"], shot_steps, 2),
                                            ("Asset", self.data["Asset"], asset_steps, 3)]:
            for owner in records:
                for step_id in rng.sample(steps, rng.randint(1, count)):
                    step_code = STEPS[step_id - 1][0]
                    start = self.maybe(_dt.date(2024, 1, 1) + _dt.timedelta(days=rng.randrange(0, 400)), 0.15)
                    due = None
                    if start is not None and self.chance(0.85):
                        due = start + _dt.timedelta(days=rng.randrange(0, 60))
                    # A handful of due dates relative to today, for in_last/in_next/in_calendar_*.
                    if len(self.data.get("Task", [])) % 50 == 7:
                        due = self.today + _dt.timedelta(days=relative_days[len(self.data["Task"]) // 50 % 8])
                    assignees = rng.sample(human_users, rng.choice([0, 1, 1, 1, 2]))
                    self.add("Task", {
                        "content": rng.choice(task_contents[step_code]),
                        "entity": self.maybe(link(kind, owner["id"]), 0.02),
                        "step": self.maybe(link("Step", step_id), 0.05),
                        "project": owner["project"],
                        "sg_status_list": self.maybe(rng.choice(TASK_STATUSES), 0.05),
                        "task_assignees": links(link("HumanUser", u) for u in assignees),
                        "start_date": None if start is None else fmt_date(start),
                        "due_date": None if due is None else fmt_date(due),
                        "duration": self.maybe(rng.randrange(0, 5) * 480, 0.3),
                        "est_in_mins": self.maybe(rng.randrange(1, 20) * 60, 0.4),
                        "time_percent_of_est": self.maybe(rng.randrange(0, 150), 0.5),
                        "sg_task_order": self.maybe(rng.randrange(-3, 10), 0.3),
                        "milestone": self.chance(0.1),
                        "color": self.maybe(rng.choice(["pipeline_step", "255,0,0", "0,255,0"]), 0.5),
                        "created_at": self.datetime_2024(),
                        "created_by": self.creator(),
                    }, retired=self.chance(0.02) or owner.get("__retired", False) and self.chance(0.5))

        # Versions: on shots and assets, with a task of the same owner when there is one.
        tasks_by_owner: dict[tuple, list[int]] = {}
        for task in self.data["Task"]:
            if task["entity"] is not None:
                tasks_by_owner.setdefault((task["entity"]["type"], task["entity"]["id"]), []).append(task["id"])
        owners = [("Shot", s) for s in self.data["Shot"]] + [("Asset", a) for a in self.data["Asset"]]
        version_counter: dict[tuple, int] = {}
        for _ in range(520):
            kind, owner = rng.choice(owners)
            key = (kind, owner["id"])
            version_counter[key] = version_counter.get(key, 0) + 1
            first = self.maybe(rng.choice([1001, 1009, 0]), 0.15)
            last = None if first is None else first + rng.randrange(0, 200)
            self.add("Version", {
                "code": "%s_v%03d" % (owner["code"], version_counter[key]),
                "entity": self.maybe(link(kind, owner["id"]), 0.03),
                "sg_task": self.maybe(link("Task", rng.choice(tasks_by_owner[key])) if key in tasks_by_owner else None, 0.1),
                "project": owner["project"],
                "user": self.maybe(link("HumanUser", rng.choice(human_users)), 0.1),
                "sg_status_list": self.maybe(rng.choice(VERSION_STATUSES), 0.1),
                "sg_first_frame": first,
                "sg_last_frame": last,
                "frame_count": None if last is None else last - first + 1,
                "sg_frames_aspect_ratio": self.maybe(rng.choice([1.78, 2.39, 1.85, 1.0, 0.5]), 0.2),
                "sg_uploaded_movie_frame_rate": self.maybe(rng.choice([24.0, 23.976, 25.0, 29.97, 48.0]), 0.3),
                "flagged": self.chance(0.15),
                "sg_frames_have_slate": self.chance(0.5),
                "description": self.maybe(self.description(), 0.3),
                "created_at": self.datetime_2024(),
                "created_by": self.creator(),
            }, retired=self.chance(0.03))

        # Notes link to a mixture of shots, assets and versions (ids overlap across types);
        # addressed to users and groups.
        linkable = [("Shot", self.all_ids("Shot")), ("Asset", self.all_ids("Asset")),
                    ("Version", self.all_ids("Version"))]
        for n in range(210):
            note_links = []
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                kind, ids = rng.choice(linkable)
                note_links.append(link(kind, rng.choice(ids)))
            to = [link("HumanUser", u) for u in rng.sample(human_users, rng.randint(0, 2))]
            if self.chance(0.2):
                to.append(link("Group", rng.randint(1, 4)))
            subject = rng.choice(["Feedback", "feedback round 2", "Client notes", "CLIENT NOTES",
                                  "Daily review", "Re: 100% sure?"]) + " #%d" % (n + 1)
            self.add("Note", {
                "subject": subject,
                "content": self.maybe(self.description(), 0.2),
                "project": link("Project", rng.choice(live_projects)),
                "user": self.maybe(link("HumanUser", rng.choice(human_users)), 0.1),
                "note_links": links(note_links),
                "addressings_to": links(to),
                "sg_note_type": self.maybe(rng.choice(NOTE_TYPES), 0.2),
                "sg_status_list": self.maybe(rng.choice(NOTE_STATUSES), 0.1),
                "created_at": self.datetime_2024(),
            }, retired=self.chance(0.04))
        for n in range(110):
            self.add("Reply", {
                "content": rng.choice(["Agreed", "agreed!", "Will fix", "Done", "see v002", "ok 👍"]),
                "entity": link("Note", rng.choice(self.all_ids("Note"))),
                "user": self.maybe(link("HumanUser", rng.choice(human_users)), 0.1),
                "created_at": self.datetime_2024(),
            }, retired=self.chance(0.03))

        versions = self.all_ids("Version")
        for n in range(12):
            self.add("Playlist", {
                "code": "Dailies %02d" % (n + 1) if n % 3 else "dailies_%02d" % (n + 1),
                "project": link("Project", rng.choice(live_projects)),
                "versions": links(link("Version", v) for v in rng.sample(versions, rng.randint(0, 12))),
                "sg_date_and_time": self.maybe(self.datetime_2024(), 0.2),
                "description": self.maybe(self.description(), 0.5),
            }, retired=n == 11)

        for n, code in enumerate(["primary", "secondary", "Archive", "scratch_%"]):
            self.add("LocalStorage", {
                "code": code,
                "uuid": "%08x-0000-4000-8000-%012x" % (rng.getrandbits(32), rng.getrandbits(48)),
                "linux_path": "/mnt/%s" % code,
                "description": self.maybe(self.description(), 0.5),
            })

        # CustomEntity01 holds edge-case strings for targeted tests: unicode case pairs and
        # SQL-looking codes.  The differential test does not query this type.
        for code in ["ÉCLAIR", "éclair", "Straße", "STRASSE", "ΣΟΦΙΑ", "σοφια",
                     "'; DROP TABLE Shot; --", "' OR 1=1 --", "100%", "1000", "a_c", "abc"]:
            self.add("CustomEntity01", {"code": code, "project": link("Project", 1),
                                        "sg_primary": code.isupper()})
        self.links_to_the_edges()
        return self.data

    def links_to_the_edges(self):
        """Published files, groups among task assignees, and both sides of the links a
        site keeps in step (Note.replies, Group.users, Version.published_files): the
        link targets a cache may leave out while caching the types that link to them.
        Built last, so the records above keep the values they had before."""
        rng = self.rng
        # A retired group, in some users' groups and on some tasks.
        retired_group = self.add("Group", {"code": "Old Vendors"}, retired=True)["id"]
        group_ids = self.all_ids("Group")
        for user in self.data["HumanUser"]:
            if self.chance(0.1):
                user["groups"] = links(user["groups"] + [link("Group", retired_group)])
        for group in self.data["Group"]:
            group["users"] = links(link("HumanUser", u["id"]) for u in self.data["HumanUser"]
                                   if any(g["id"] == group["id"] for g in u["groups"]))
        for task in self.data["Task"]:
            if self.chance(0.08):
                task["task_assignees"] = links(task["task_assignees"] + [link("Group", rng.choice(group_ids))])

        kinds = ["comp", "Render", "PLATE", "geo_cache", "100%_final", "café_lut"]
        extensions = [".exr", ".mov", ".abc", ".nk"]
        for version in self.data["Version"]:
            if not self.chance(0.4):
                version["published_files"] = []
                continue
            made = []
            for n in range(rng.choice([1, 1, 2, 3])):
                kind = rng.choice(kinds)
                made.append(self.add("PublishedFile", {
                    "code": "%s_%s%s" % (version["code"], kind, rng.choice(extensions)),
                    "name": kind,
                    "description": self.maybe(self.description(), 0.5),
                    "entity": version["entity"],
                    "project": version["project"],
                    "task": version["sg_task"],
                    "version": link("Version", version["id"]),
                    "version_number": n + 1,
                    "sg_status_list": self.maybe(rng.choice(["wtg", "ip", "cmpt"]), 0.1),
                    "path_cache": "/mnt/primary/%s/%d" % (kind, version["id"]),
                    "created_at": self.datetime_2024(),
                    "created_by": self.creator(),
                }, retired=self.chance(0.05))["id"])
            version["published_files"] = links(link("PublishedFile", i) for i in made)

        for note in self.data["Note"]:
            note["replies"] = links(link("Reply", r["id"]) for r in self.data["Reply"]
                                    if r["entity"]["id"] == note["id"])

    def creator(self):
        """created_by: mostly users, sometimes a script (ids overlap with users)."""
        if self.chance(0.15):
            return link("ApiUser", self.rng.randint(1, 3))
        return link("HumanUser", self.rng.randint(1, 40))


def generate(seed: int = DEFAULT_SEED, today: _dt.date | None = None) -> dict:
    """Build the dataset for `seed` (dates relative to `today`, default: today)."""
    return _Builder(seed, today or _dt.date.today()).build()


def load_schema() -> tuple[dict, dict]:
    """The fixture schema: (fields by type, entity schema)."""
    with open(FIELDS_JSON, encoding="utf-8") as fh:
        fields = json.load(fh)
    with open(ENTITIES_JSON, encoding="utf-8") as fh:
        entities = json.load(fh)
    return fields, entities


if __name__ == "__main__":
    import sys

    out = generate()
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stderr.write("%d records\n" % sum(len(v) for v in out.values()))


def check(data: dict, fields: dict) -> list[str]:
    """Problems with `data` against the schema `fields` (empty when it is well formed)."""
    problems = []
    scalar_types = {
        "text": str, "list": str, "status_list": str, "color": str, "uuid": str,
        "entity_type": str, "number": int, "duration": int, "percent": int,
        "float": float, "checkbox": bool, "date": str, "date_time": str,
    }
    for entity_type, records in data.items():
        if entity_type not in fields:
            problems.append("unknown type %s" % entity_type)
            continue
        for record in records:
            for name, value in record.items():
                if name == "__retired":
                    continue
                if name not in fields[entity_type]:
                    problems.append("%s.%s is not in the schema" % (entity_type, name))
                    continue
                data_type = fields[entity_type][name]["data_type"]["value"]
                props = fields[entity_type][name]["properties"]
                if value is None:
                    continue
                if data_type in ("entity", "multi_entity"):
                    items = value if data_type == "multi_entity" else [value]
                    valid = props.get("valid_types", {}).get("value") or []
                    for item in items:
                        if item["type"] not in valid:
                            problems.append("%s.%s links a %s" % (entity_type, name, item["type"]))
                elif data_type in scalar_types:
                    expected = scalar_types[data_type]
                    if type(value) is not expected:
                        problems.append("%s.%s=%r is not %s" % (entity_type, name, value, data_type))
                    valid = props.get("valid_values", {}).get("value")
                    if data_type in ("list", "status_list") and valid and value not in valid:
                        problems.append("%s.%s=%r is not a valid value" % (entity_type, name, value))
                else:
                    problems.append("%s.%s has unexpected type %s" % (entity_type, name, data_type))
    return problems
