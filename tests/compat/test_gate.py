"""The gate in front of the cache: who gets cached data, and what of it.

A stand-in for a real site's own answers sits between the proxy and ``shotgun-cache sim``
(the tap of proxy_support.py with an ``intercept``): it answers an SSO-only login with
fault 108, a 2FA login without its token with 106, a maintenance page as HTML with HTTP
200, an outage by resetting connections, and a revoked key with 102; everything else
reaches the simulated site.  The permission policy (`access:` in config.yaml) is checked
on SQLite and PostgreSQL: a user of a restricted rule set reads through the proxy exactly
the records of its projects, for finds, deep paths and summaries, answered by the cache;
a rule set served by the site gets the site's answer from the site.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest
import shotgun_api3

from conftest import OTHER_SCRIPT, SCRIPT_KEY, SCRIPT_NAME, binary_path, connect
from proxy_support import USER, cached_fields, every_cached_field, first_difference, start_stack, with_accounts
import dataset as dataset_mod

TYPES = ["Project", "Sequence", "Shot", "Asset", "Task", "Version", "HumanUser"]
TOKEN = "123456"
ARTIST_PROJECT = 2
# login -> (password, permission rule set)
GATE_USERS = {
    "gate_admin": ("admin-pw", "Admin"),
    "gate_artist": ("artist-pw", "Artist"),
    "gate_vendor": ("vendor-pw", "Vendor"),
    "gate_twofa": ("twofa-pw", "Admin"),
    "gate_sso": ("sso-pw", "Admin"),
}
PG_URL = "postgresql://postgres@127.0.0.1:5432/"


def gate_data(dataset: dict) -> dict:
    """The dataset with permission rule sets, a user of each, and the artist a member
    of one project only."""
    fields = dataset_mod.load_schema()[0]
    data = with_accounts(dataset, fields)
    data = {t: [dict(r) for r in records] for t, records in data.items()}
    rule_sets = {}
    for i, name in enumerate(["Admin", "Manager", "Artist", "Vendor"], start=1):
        rule_sets[name] = {"type": "PermissionRuleSet", "id": i}
        data.setdefault("PermissionRuleSet", []).append(
            {"id": i, "code": name, "display_name": name, "entity_type": "HumanUser"})
    users = data["HumanUser"]
    checkboxes = [n for n, d in fields["HumanUser"].items() if d["data_type"]["value"] == "checkbox"]
    for login, (_, rule_set) in GATE_USERS.items():
        record = {"id": max(u["id"] for u in users) + 1, "login": login, "name": login,
                  "permission_rule_set": rule_sets[rule_set]}
        record.update({n: False for n in checkboxes})
        users.append(record)
    artist = next(u for u in users if u["login"] == "gate_artist")
    for project in data["Project"]:
        members = [m for m in project.get("users") or [] if m["id"] != artist["id"]]
        if project["id"] == ARTIST_PROJECT:
            members.append({"type": "HumanUser", "id": artist["id"]})
        project["users"] = members
    return data


def sim_users() -> list[str]:
    out = []
    for login, (password, _) in GATE_USERS.items():
        out += ["--user", "%s:%s" % (login, password)]
    return out


def fault(code: int, message: str) -> tuple:
    body = json.dumps({"exception": True, "error_code": code, "message": message}).encode()
    return 200, "application/json; charset=utf-8", body


class StandIn:
    """What a real site answers that the simulated one does not (see the module doc)."""

    def __init__(self):
        self.maintenance = False
        self.down = False
        self.revoked: set[str] = set()

    def __call__(self, request):
        if self.down:
            return "drop"
        if self.maintenance:
            return 200, "text/html; charset=utf-8", b"<html><body>Down for maintenance</body></html>"
        params = (request or {}).get("params") or []
        auth = params[0] if params and isinstance(params[0], dict) else {}
        login = auth.get("user_login")
        if login == "gate_sso":
            return fault(108, "Authentication failed: user credentials are not allowed for SSO logins")
        if login == "gate_twofa" and auth.get("auth_token") != TOKEN:
            return fault(106, "This user needs a two-factor authentication token")
        if auth.get("script_name") in self.revoked:
            return fault(102, "Can't authenticate script '%s'" % auth.get("script_name"))
        return None


def post(url: str, body: bytes):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("POST", "/api3/json", body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def read_body(auth: dict, entity_type: str = "Shot", per_page: int = 50, fields=("code",)) -> bytes:
    return json.dumps({"method_name": "read", "params": [auth, {
        "type": entity_type, "return_fields": list(fields),
        "filters": {"logical_operator": "and", "conditions": []},
        "paging": {"entities_per_page": per_page, "current_page": 1}}]}).encode()


def user_client(url: str, login: str, password: str | None = None, **kwargs) -> shotgun_api3.Shotgun:
    sg = shotgun_api3.Shotgun(url + "/", login=login, password=password or GATE_USERS[login][0],
                              connect=False, **kwargs)
    sg.config.timeout_secs = 60
    return sg


def reads_of(stack, mark: int, entity_type: str) -> list[dict]:
    """Requests for `entity_type` the proxy sent to the site since `mark` (the cache's own
    sync excluded)."""
    return [e for e in stack.tap.since(mark, script=None)
            if e["type"] == entity_type and e["script"] != "cache"]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate_stack(dataset, tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("gate"), gate_data(dataset), TYPES, accounts=False,
                        sim_args=sim_users())
    stack.stand_in = StandIn()
    stack.tap.intercept = stack.stand_in
    try:
        stack.settle()
        yield stack
    finally:
        stack.stop()


def fresh_database() -> tuple[str, str]:
    name = "gate_%s" % uuid.uuid4().hex[:12]
    subprocess.run(["psql", PG_URL + "postgres", "-q", "-c", "CREATE DATABASE %s" % name],
                   check=True, capture_output=True, timeout=60)
    return name, PG_URL + name


def drop_database(name: str) -> None:
    subprocess.run(["psql", PG_URL + "postgres", "-q", "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name],
                   capture_output=True, timeout=60)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def policy_stack(request, dataset, tmp_path_factory):
    name, database = fresh_database() if request.param == "postgres" else (None, None)
    try:
        stack = start_stack(tmp_path_factory.mktemp("policy-%s" % request.param), gate_data(dataset), TYPES,
                            accounts=False, sim_args=sim_users(), database=database)
        try:
            stack.settle()
            yield stack
        finally:
            stack.stop()
    finally:
        if name:
            drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request):
    """The cache's database: None for SQLite, or a fresh PostgreSQL database."""
    name, url = fresh_database() if request.param == "postgres" else (None, None)
    try:
        yield url
    finally:
        if name:
            drop_database(name)


# -- credentials: only the site's well-formed acceptance lets a caller in ------------------------


def test_sudo_to_a_login_that_does_not_exist_is_refused(gate_stack):
    """The site refuses a script's `sudo_as_login` to an unknown login (a fault that is not
    102); before, the proxy took any fault but 102 for an acceptance and served the cache."""
    sg = shotgun_api3.Shotgun(gate_stack.url + "/", script_name=SCRIPT_NAME, api_key=SCRIPT_KEY,
                              sudo_as_login="nobody_at_all", connect=False)
    for _ in range(2):  # the second answer comes from the remembered refusal
        with pytest.raises(shotgun_api3.Fault) as raised:
            sg.find("Shot", [], ["code"], limit=3)
        assert "The user does not have permission to 'sudo'" in str(raised.value)


def test_sso_and_two_factor_faults_are_refusals(gate_stack):
    url = gate_stack.url
    with pytest.raises(shotgun_api3.UserCredentialsNotAllowedForSSOAuthenticationFault):
        user_client(url, "gate_sso", "any password at all").find("Shot", [], ["code"], limit=3)
    with pytest.raises(shotgun_api3.MissingTwoFactorAuthenticationFault):
        user_client(url, "gate_twofa").find("Shot", [], ["code"], limit=3)
    # The token is part of the verdict: a correct one is served, then a wrong one is not.
    auth = {"user_login": "gate_twofa", "user_password": GATE_USERS["gate_twofa"][0], "auth_token": TOKEN}
    status, raw = post(url, read_body(auth))
    reply = json.loads(raw)
    assert status == 200 and len(reply["results"]["entities"]) == 50, reply
    for wrong in ("000000", None):
        bad = dict(auth, auth_token=wrong) if wrong else {k: v for k, v in auth.items() if k != "auth_token"}
        status, raw = post(url, read_body(bad))
        reply = json.loads(raw)
        assert status == 200 and "results" not in reply and reply["error_code"] == 106, reply


def test_a_maintenance_page_is_not_an_acceptance(gate_stack):
    """A made-up key while the site shows an HTML page with HTTP 200: no data (a 503 the
    client reports as the site being down), and the key is refused once the site is back."""
    stand_in = gate_stack.stand_in
    made_up = {"script_name": "intruder", "script_key": "made-up-key"}
    stand_in.maintenance = True
    try:
        status, raw = post(gate_stack.url, read_body(made_up))
        assert status == 503 and b"results" not in raw, (status, raw[:300])
        intruder = connect(gate_stack.url, "intruder", "made-up-key")
        with pytest.raises(shotgun_api3.ProtocolError):
            intruder.find("Shot", [], ["code"], limit=3)
    finally:
        stand_in.maintenance = False
    status, raw = post(gate_stack.url, read_body(made_up))
    reply = json.loads(raw)
    assert status == 200 and reply.get("error_code") == 102 and "results" not in reply, reply


def test_pages_hold_at_most_the_sites_maximum(gate_stack):
    """`entities_per_page` above the site's 500 gives pages of 500, through the proxy as at
    the site (before, one read returned every record)."""
    auth = {"script_name": SCRIPT_NAME, "script_key": SCRIPT_KEY}
    fields = every_cached_field(gate_stack, "Task")
    answers = [json.loads(post(url, read_body(auth, "Task", 5000, fields))[1])
               for url in (gate_stack.url, gate_stack.site_url)]
    assert len(answers[0]["results"]["entities"]) == 500
    assert answers[0] == answers[1], first_difference(("ok", answers[0]["results"]["entities"]),
                                                      ("ok", answers[1]["results"]["entities"]))


def proxy_peak_kib(stack) -> int:
    with open("/proc/%d/status" % stack.proxy.proc.pid, encoding="ascii") as fh:
        return int(re.search(r"VmHWM:\s+(\d+) kB", fh.read()).group(1))


def test_a_large_unauthenticated_body_costs_little_memory(gate_stack):
    """A 40 MB body with a made-up key: refused, and the proxy's peak resident size grows
    by a small multiple of the body (before: 3.2 GB for a 51 MB body)."""
    before = proxy_peak_kib(gate_stack)
    rows = ",".join('{"field_name":"sg_f%d","value":[1,2,3,"abc"]}' % i for i in range(900_000))
    body = ('{"method_name":"create","params":[{"script_name":"intruder","script_key":"nope"},'
            '{"type":"Shot","fields":[' + rows + ']}]}').encode()
    assert len(body) > 40_000_000
    status, raw = post(gate_stack.url, body)
    reply = json.loads(raw)
    assert status == 200 and reply.get("error_code") == 102 and "results" not in reply, reply
    grown_mib = (proxy_peak_kib(gate_stack) - before) / 1024
    print("peak resident size grew by %.0f MiB for a %.0f MB body" % (grown_mib, len(body) / 1e6))
    assert grown_mib < 3 * len(body) / 2**20, grown_mib
    assert gate_stack.proxy.alive()


# -- reads during outages, and revoked keys ------------------------------------------------------


def short_verdicts(text: str) -> str:
    text = re.sub(r"credential_ttl: [0-9.]+", "credential_ttl: 1.0", text)
    return re.sub(r"refused_ttl: [0-9.]+", "refused_ttl: 1.0", text)


def test_outage_grace_and_revocation(dataset, tmp_path_factory):
    """With `credential_ttl: 1`: while the site is down, a caller accepted before keeps
    its cached reads past the ttl (offline_grace), a caller never checked gets an error;
    back up, a key the site now refuses stops being served within the ttl."""
    stack = start_stack(tmp_path_factory.mktemp("gate-outage"), gate_data(dataset), TYPES, accounts=False,
                        sim_args=sim_users(), edit_config=short_verdicts)
    stand_in = StandIn()
    stack.tap.intercept = stand_in
    try:
        stack.settle()
        psg = connect(stack.url)
        psg.BACKOFF = 0.05
        fields = every_cached_field(stack, "Shot") + ["sg_sequence.Sequence.code"]
        calls = [lambda sg: sg.find("Shot", [], fields),
                 lambda sg: sg.summarize("Task", [], [{"field": "id", "type": "count"}],
                                         grouping=[{"field": "entity", "type": "exact", "direction": "asc"}])]
        before = [call(psg) for call in calls]
        site = connect(stack.site_url)
        for got, call in zip(before, calls):
            expected = call(site)
            assert got == expected, first_difference(("ok", got), ("ok", expected))
        stand_in.down = True
        time.sleep(1.5)
        assert [call(psg) for call in calls] == before
        other = connect(stack.url, *OTHER_SCRIPT)
        other.BACKOFF = 0.05
        with pytest.raises(shotgun_api3.ProtocolError):
            other.find("Shot", [], ["code"], limit=1)
        stand_in.down = False
        stand_in.revoked.add(SCRIPT_NAME)
        time.sleep(1.5)
        with pytest.raises(shotgun_api3.AuthenticationFault):
            psg.find("Shot", [], ["code"], limit=1)
        stand_in.revoked.clear()
        time.sleep(1.5)
        assert calls[0](psg) == before[0]
        assert stack.proxy.alive()
    finally:
        stack.stop()


# -- the permission policy ------------------------------------------------------------------------


P = {"type": "Project", "id": ARTIST_PROJECT}
SCOPED_FINDS = [
    ("Shot", [], ["code", "sg_sequence", "project", "assets", "sg_sequence.Sequence.code"]),
    ("Asset", [], ["code", "project", "shots"]),
    ("Sequence", [], ["code", "shots"]),
    ("Task", [["entity.Shot.sg_sequence.Sequence.code", "starts_with", "SQ"]],
     ["content", "entity", "entity.Shot.code", "task_assignees"]),
    ("Task", [["project.Project.name", "is_not", "nothing"]], ["content", "project"]),
    ("Version", [], ["code", "entity", "project"]),
    ("Shot", [["project", "is", {"type": "Project", "id": 1}]], ["code"]),
    ("Shot", [{"filter_operator": "any", "filters": [["project", "is", {"type": "Project", "id": 1}],
                                                    ["code", "starts_with", "SQ"]]}], ["code"]),
]


def scoped(entity_type: str, filters: list) -> list:
    if entity_type == "Project":
        return filters + [["id", "is", ARTIST_PROJECT]]
    if entity_type == "HumanUser":
        return filters
    return filters + [["project", "is", P]]


def test_restricted_rule_set_reads_its_projects_only(policy_stack):
    """An Artist (login, and a script's sudo_as_login) reads through the proxy exactly the
    records of its project: finds, deep paths and summaries, all answered by the cache."""
    stack = policy_stack
    site = connect(stack.site_url)
    artist = user_client(stack.url, "gate_artist")
    sudo = shotgun_api3.Shotgun(stack.url + "/", script_name=SCRIPT_NAME, api_key=SCRIPT_KEY,
                                sudo_as_login="gate_artist", connect=False)
    cached = cached_fields(stack)
    checked = 0
    for sg in (artist, sudo):
        mark = stack.tap.mark()
        for entity_type, filters, paths in SCOPED_FINDS + [("Project", [], ["users"]), ("HumanUser", [], ["login"])]:
            # Every cached field of the type, links with their names (those to types the
            # cache does not hold too: Step, Group, ApiUser, PublishedFile...), and the deep
            # paths.
            fields = sorted(cached[entity_type]) + [p for p in paths if "." in p]
            order = [{"field_name": "id", "direction": "asc"}]
            got = sg.find(entity_type, filters, fields, order=order)
            expected = site.find(entity_type, scoped(entity_type, filters), fields, order=order)
            assert got == expected, "%s %r: %s" % (entity_type, filters,
                                                   first_difference(("ok", got), ("ok", expected)))
            checked += len(got)
        for entity_type, grouping in (("Shot", "sg_sequence"), ("Task", "entity"), ("Version", "project"),
                                      ("Task", "step"), ("Shot", "created_by")):
            summaries = [{"field": "id", "type": "count"}]
            groups = [{"field": grouping, "type": "exact", "direction": "asc"}]
            got = sg.summarize(entity_type, [], summaries, grouping=groups)
            expected = site.summarize(entity_type, scoped(entity_type, []), summaries, grouping=groups)
            assert got == expected, "%s by %s: %s" % (entity_type, grouping, first_difference(("ok", got),
                                                                                              ("ok", expected)))
        # Every one of those reads was the cache's (the probe's own reads aside).
        sent = [e for e in stack.tap.since(mark, script=None)
                if e["script"] != "cache" and e["method"] != "info"
                and e["type"] not in ("HumanUser", "Project", "EventLogEntry")]
        assert sent == [], sent[:3]
    all_shots = len(site.find("Shot", [], ["id"]))
    artist_shots = len(artist.find("Shot", [], ["id"]))
    assert 0 < artist_shots < all_shots, (artist_shots, all_shots)
    assert checked > 100


def test_site_and_cached_rule_sets(policy_stack):
    """A Vendor (served by the site) gets the site's answer from the site; so do a user
    with no rule set and a session token (the cache can't tell whose it is), even an
    Admin's; an Admin logged in gets every cached record from the cache."""
    stack = policy_stack
    site = connect(stack.site_url)
    fields = every_cached_field(stack, "Shot") + ["sg_sequence.Sequence.code"]
    expected = site.find("Shot", [], fields)
    vendor = user_client(stack.url, "gate_vendor")
    mark = stack.tap.mark()
    got = vendor.find("Shot", [], fields)
    assert got == expected, first_difference(("ok", got), ("ok", expected))
    assert len(reads_of(stack, mark, "Shot")) >= 1
    token = user_client(stack.site_url, "gate_admin").get_session_token()
    for restricted in (user_client(stack.url, USER[0], USER[1]),
                       shotgun_api3.Shotgun(stack.url + "/", session_token=token, connect=False)):
        mark = stack.tap.mark()
        got = restricted.find("Shot", [], fields)
        assert got == expected, first_difference(("ok", got), ("ok", expected))
        assert len(reads_of(stack, mark, "Shot")) >= 1
    admin = user_client(stack.url, "gate_admin")
    admin.find("Shot", [], ["code"], limit=1)  # the verdict
    mark = stack.tap.mark()
    got = admin.find("Shot", [], fields)
    assert got == expected, first_difference(("ok", got), ("ok", expected))
    assert reads_of(stack, mark, "Shot") == []


def test_setup_writes_a_policy_for_each_of_the_sites_rule_sets(gate_stack, tmp_path):
    """`setup` reads the site's permission rule sets and writes each into `access:` with
    its default (Admin and Manager cached, Artist projects, the rest site);
    `--scripts site` turns scripts away from the cache."""
    text = (gate_stack.config_dir / "config.yaml").read_text(encoding="utf-8")
    for name, serve in (("Admin", "cached"), ("Manager", "cached"), ("Artist", "projects"), ("Vendor", "site")):
        assert re.search(r"(?m)^    %s: %s$" % (name, serve), text), text
    assert re.search(r"(?m)^  scripts: cached$", text), text
    folder = tmp_path / "setup-scripts-site"
    out = subprocess.run([str(binary_path()), "setup", "--config", str(folder), "--site", gate_stack.site_url,
                          "--script-name", SCRIPT_NAME, "--api-key", SCRIPT_KEY, "--types", "Shot",
                          "--scripts", "site", "--yes"], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
    assert re.search(r"(?m)^  scripts: site$", (folder / "config.yaml").read_text(encoding="utf-8"))


# -- limits: no caller holds the engine ------------------------------------------------------------


def budget(text: str) -> str:
    return re.sub(r"read_budget: [0-9.]+", "read_budget: 0.2", text)


def heavy_read(conditions: int) -> dict:
    """A read far over a 0.2 s budget: an `or` of `contains` on a deep path (no list can
    stand in for it)."""
    return {"type": "Task", "return_fields": ["content", "entity"],
            "filters": {"logical_operator": "or", "conditions": [
                {"path": "entity.Shot.code", "relation": "contains", "values": ["zz%05d" % i]}
                for i in range(conditions)]},
            "sorts": [{"field_name": "id", "direction": "asc"}],
            "paging": {"entities_per_page": 500, "current_page": 1}}


def test_reads_over_the_budget_go_to_the_site_and_starve_nobody(dataset, database, tmp_path_factory):
    """With `read_budget: 0.2`: four reads far over it, from one caller, get the site's own
    answer (from the site), and another caller's simple reads are all answered while they
    are still running; reads over the condition and grouping limits go to the site too."""
    stack = start_stack(tmp_path_factory.mktemp("gate-budget"), gate_data(dataset), TYPES, accounts=False,
                        sim_args=sim_users(), edit_config=budget, database=database)
    try:
        stack.settle()
        heavy_auth = {"script_name": OTHER_SCRIPT[0], "script_key": OTHER_SCRIPT[1]}
        heavy = json.dumps({"method_name": "read", "params": [heavy_auth, heavy_read(1500)]}).encode()
        expected = post(stack.site_url, heavy)
        assert expected[0] == 200 and b'"entities"' in expected[1], expected[1][:200]
        # The site takes its time over them, as a real site does over such reads.
        def slow_site(request):
            params = (request or {}).get("params") or []
            if len(params) == 2 and params[0].get("script_name") == OTHER_SCRIPT[0] \
                    and isinstance(params[1], dict) and params[1].get("type") == "Task":
                time.sleep(3)
            return None

        stack.tap.intercept = slow_site
        mark = stack.tap.mark()
        done = []

        def run_heavy():
            done.append((post(stack.url, heavy), time.monotonic()))

        threads = [threading.Thread(target=run_heavy) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # past the budget: the four are on their way to the site
        psg = connect(stack.url)
        site = connect(stack.site_url)
        fields = every_cached_field(stack, "Shot")
        simple = [psg.find_one("Shot", [["id", "is", i]], fields) for i in range(1, 41)]
        simple_done = time.monotonic()
        for t in threads:
            t.join(600)
        stack.tap.intercept = None
        simple_expected = [site.find_one("Shot", [["id", "is", i]], fields) for i in range(1, 41)]
        assert simple == simple_expected, first_difference(("ok", simple), ("ok", simple_expected))
        assert len(done) == 4 and min(at for _, at in done) > simple_done, \
            "the simple reads waited for the heavy ones"
        assert [reply for reply, _ in done] == [expected] * 4
        assert len([e for e in stack.tap.since(mark, script=OTHER_SCRIPT[0]) if e["type"] == "Task"]) == 4
        # Over the limits: 9 grouping levels, 6,000 conditions.
        summary = {"type": "Shot", "summaries": [{"field": "id", "type": "count"}],
                   "filters": {"logical_operator": "and", "conditions": []},
                   "grouping": [{"field": f, "type": "exact", "direction": "asc"} for f in
                                ["sg_status_list", "sg_sequence", "project", "code", "sg_cut_in",
                                 "sg_cut_out", "description", "created_by", "updated_by"]]}
        many = {"type": "Shot", "return_fields": ["code"],
                "filters": {"logical_operator": "or", "conditions": [
                    {"path": "code", "relation": "contains", "values": ["q%05d" % i]} for i in range(6000)]}}
        for method, params in (("summarize", summary), ("read", many)):
            body = json.dumps({"method_name": method, "params": [heavy_auth, params]}).encode()
            mark = stack.tap.mark()
            assert post(stack.url, body) == post(stack.site_url, body)
            assert [e["method"] for e in stack.tap.since(mark, script=OTHER_SCRIPT[0])] == [method], method
        assert stack.proxy.alive()
    finally:
        stack.stop()
