"""Standing up a cache proxy for the tests in test_proxy.py.

A *stack* is a simulated site (``shotgun-cache sim``), optionally a *tap* in front of it,
and a cache configured against it (``shotgun-cache setup``) serving the proxy
(``shotgun-cache run --listen 127.0.0.1:0``, whose ``serving on http://...`` line gives
the URL).  `start_stack` waits until ``shotgun-cache status --json`` shows every cached
type ``ready``; `Stack.stop` terminates (then kills) both processes and the tap, whatever
happened.

The tap (`SiteTap`) is a small HTTP relay between the cache and the site: it records
every request the cache and the proxy send (method, entity type, script), so a test can
tell a read the proxy answered from the cache (nothing reaches the site) from one it
passed through, and count how many times a write reached the site.  It can also be told
to lose the reply of chosen requests after the site has applied them (it resets the
connection instead of answering), as a flaky network between a proxy and a site does.

The last helpers describe how a proxy's answer differs from the site's
(`first_difference`), and whether only link names differ (`only_names_differ`).
"""

from __future__ import annotations

import http.client
import http.server
import json
import sqlite3
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import dataset as dataset_mod
from conftest import OTHER_SCRIPT, SCRIPT_KEY, SCRIPT_NAME, STARTUP_TIMEOUT, SimServer, binary_path

CACHE_SCRIPT = ("cache", "cache-own-key-0001")
USER = ("artist", "pa55word")
READY_TIMEOUT = 120.0


# -- the tap -----------------------------------------------------------------------------------


class SiteTap:
    """An HTTP/1.1 relay to `site_url` that records what passes and can lose replies."""

    def __init__(self, site_url: str):
        parts = site_url.split("://", 1)[1].rstrip("/").split(":")
        self.site_host, self.site_port = parts[0], int(parts[1])
        self.lock = threading.Lock()
        self.seen: list[dict] = []
        # Requests for which this returns True reach the site, but their reply is lost.
        self.lose_reply = None
        # A stand-in for a real site's own answers: called with the decoded request (or
        # None) before it is relayed; returns None to relay it, "drop" to reset the
        # connection without an answer, or (status, content type, body bytes) to answer.
        self.intercept = None
        tap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                entry = tap._describe(body)
                with tap.lock:
                    tap.seen.append(entry)
                if tap.intercept is not None:
                    try:
                        request = json.loads(body)
                    except ValueError:
                        request = None
                    answer = tap.intercept(request)
                    if answer == "drop":
                        self._reset()
                        return
                    if answer is not None:
                        status, content_type, reply = answer
                        self.send_response(status)
                        self.send_header("content-type", content_type)
                        self.send_header("content-length", str(len(reply)))
                        self.end_headers()
                        self.wfile.write(reply)
                        return
                lose = tap.lose_reply is not None and tap.lose_reply(entry)
                try:
                    conn = getattr(self, "_site", None)
                    if conn is None:
                        conn = self._site = http.client.HTTPConnection(tap.site_host, tap.site_port, timeout=120)
                    headers = {"content-type": self.headers.get("content-type") or "application/json"}
                    try:
                        conn.request("POST", self.path, body=body, headers=headers)
                        response = conn.getresponse()
                    except (OSError, http.client.HTTPException):
                        # A stale kept-alive connection: one fresh try.
                        conn.close()
                        conn = self._site = http.client.HTTPConnection(tap.site_host, tap.site_port, timeout=120)
                        conn.request("POST", self.path, body=body, headers=headers)
                        response = conn.getresponse()
                    reply = response.read()
                except (OSError, http.client.HTTPException):
                    lose = True  # the site is gone: so is the reply
                    reply, response = b"", None
                if lose:
                    entry["reply_lost"] = True
                    self._reset()
                    return
                self.send_response(response.status)
                self.send_header("content-type", response.getheader("content-type") or "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self):  # noqa: N802
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

            def _reset(self):
                # Close with RST (no FIN first): the caller sees a reset connection.
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # connections reset on purpose
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def _describe(body: bytes) -> dict:
        entry = {"method": None, "type": None, "script": None, "login": None, "bytes": len(body)}
        try:
            request = json.loads(body)
            entry["method"] = request.get("method_name")
            params = request.get("params") or []
            for item in params:
                if isinstance(item, dict) and ("script_name" in item or "user_login" in item
                                               or "session_token" in item):
                    entry["script"] = item.get("script_name")
                    entry["login"] = item.get("user_login")
                elif isinstance(item, dict):
                    entry["type"] = item.get("type")
                    entry["params"] = item
                elif isinstance(item, list):
                    entry["params"] = item
        except (ValueError, AttributeError):
            pass
        return entry

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def since(self, mark: int, script: str | None = SCRIPT_NAME) -> list[dict]:
        """Requests seen after `mark`, of one script (the proxy's callers), or of all."""
        with self.lock:
            items = list(self.seen[mark:])
        return [e for e in items if script is None or e["script"] == script]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# -- the proxy process ---------------------------------------------------------------------------


class ProxyServer(SimServer):
    """A `shotgun-cache run` process; its URL is read from `serving on http(s)://...`."""

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            match = re.search(r"serving on (https?://\S+)", line)
            if match and self.url is None:
                self.url = match.group(1).rstrip("/")
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: a graceful stop
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Stack:
    """A site, maybe a tap, and a cache proxy over it."""

    def __init__(self, tmp_dir: Path):
        self.tmp_dir = tmp_dir
        self.config_dir = tmp_dir / "cache-config"
        self.sim: SimServer | None = None
        self.tap: SiteTap | None = None
        self.proxy: ProxyServer | None = None
        self.types: list[str] = []

    @property
    def site_url(self) -> str:
        return self.sim.url

    @property
    def url(self) -> str:
        return self.proxy.url

    def status(self) -> dict:
        out = subprocess.run([str(binary_path()), "status", "--config", str(self.config_dir), "--json"],
                             capture_output=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("status failed: %s" % out.stderr.decode("utf-8", "replace")[-2000:])
        return json.loads(out.stdout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if not self.proxy.alive():
                raise RuntimeError("shotgun-cache run exited (%s):\n%s" % (self.proxy.proc.poll(),
                                                                           self.proxy.stderr_tail()))
            try:
                last = self.status()
            except (RuntimeError, ValueError) as error:
                last = str(error)
            else:
                # Every type: the configured ones and the names-only tables of
                # the link targets they leave out.
                states = {t["entity_type"]: t["state"] for t in last["types"]}
                if (all(states.get(t) == "ready" for t in self.types)
                        and all(state == "ready" for state in states.values())):
                    return last
            time.sleep(0.2)
        raise RuntimeError("the cache did not get ready in %.0fs; last status: %s\nrun stderr:\n%s"
                           % (timeout, last, self.proxy.stderr_tail()))

    def settle(self, timeout: float = 30.0) -> None:
        """Waits until the cache has applied every event the site has logged."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.status()
            if (last.get("site_reachable") and last.get("lag_events") == 0
                    and last.get("watermark") is not None):
                return
            time.sleep(0.2)
        raise RuntimeError("the cache did not catch up in %.0fs: %s" % (timeout, last))

    def stop(self) -> None:
        for part in (self.proxy, self.sim):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - keep stopping the rest
                    pass
        if self.tap is not None:
            self.tap.stop()


def with_accounts(data: dict, fields: dict) -> dict:
    """`data` plus the ApiUser of each script and the HumanUser of the login the site lets
    in, with every checkbox set.  Without them the site makes these records itself at
    start, with null checkboxes, which it reads as false but sorts as null (see
    test_proxy.py, test_site_sorts_a_null_checkbox_as_null)."""
    data = dict(data)
    accounts = [("ApiUser", "firstname", name) for name, _ in (CACHE_SCRIPT, (SCRIPT_NAME, SCRIPT_KEY), OTHER_SCRIPT)]
    accounts.append(("HumanUser", "login", USER[0]))
    for entity_type, key, value in accounts:
        records = list(data.get(entity_type, []))
        if any(r.get(key) == value for r in records):
            continue
        record = {"id": max([r["id"] for r in records] or [0]) + 1, key: value}
        if entity_type == "HumanUser":
            record["name"] = value
        for name, definition in fields[entity_type].items():
            if definition["data_type"]["value"] == "checkbox":
                record[name] = False
        records.append(record)
        data[entity_type] = records
    return data


def start_stack(tmp_dir: Path, data: dict, types: list[str], drop_fields: dict | None = None,
                tap: bool = True, noise_every: int | None = None, accounts: bool = True,
                run_args: list[str] | None = None, sim_args: list[str] | None = None,
                database: str | None = None, edit_config=None) -> Stack:
    """Starts a site loaded with `data` (plus its accounts, see `with_accounts`, when
    `accounts`), a tap (when asked) and a proxy caching `types` (every field `setup`
    chooses, minus `drop_fields` {type: [field, ...]}; `run_args` are added to its `run`,
    `sim_args` to the site's), and waits until every type is imported.  `database` is
    the cache's (default: SQLite in the folder); `edit_config` (text -> text) rewrites
    config.yaml before `run` starts.  The caller must `stop()` it."""
    stack = Stack(tmp_dir)
    if accounts:
        data = with_accounts(data, dataset_mod.load_schema()[0])
    try:
        data_path = tmp_dir / "dataset.json"
        data_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        argv = [str(binary_path()), "sim", "--listen", "127.0.0.1:0",
                "--schema", str(dataset_mod.FIELDS_JSON), "--entity-schema", str(dataset_mod.ENTITIES_JSON),
                "--load", str(data_path), "--user", "%s:%s" % USER] + list(sim_args or [])
        for name, key in (CACHE_SCRIPT, (SCRIPT_NAME, SCRIPT_KEY), OTHER_SCRIPT):
            argv += ["--script", "%s:%s" % (name, key)]
        if noise_every is not None:
            argv += ["--noise-every", str(noise_every)]
        stack.sim = SimServer(argv, tmp_dir / "sim.stderr.log")
        stack.sim.wait_ready(STARTUP_TIMEOUT)
        site_for_cache = stack.sim.url
        if tap:
            stack.tap = SiteTap(stack.sim.url)
            site_for_cache = stack.tap.url

        stack.types = list(types)
        setup = subprocess.run([str(binary_path()), "setup", "--config", str(stack.config_dir),
                                "--site", site_for_cache, "--script-name", CACHE_SCRIPT[0],
                                "--api-key", CACHE_SCRIPT[1], "--types", ",".join(types), "--yes"]
                               + (["--database", database] if database else []),
                               capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        if setup.returncode != 0:
            raise RuntimeError("setup failed: %s" % setup.stderr.decode("utf-8", "replace"))
        if edit_config is not None:
            path = stack.config_dir / "config.yaml"
            path.write_text(edit_config(path.read_text(encoding="utf-8")), encoding="utf-8")
        for entity_type, fields in (drop_fields or {}).items():
            path = stack.config_dir / "entity-configs" / ("%s.json" % entity_type)
            config = json.loads(path.read_text(encoding="utf-8"))
            config["fields"] = [f for f in config["fields"] if f not in fields]
            path.write_text(json.dumps(config, indent=2), encoding="utf-8")

        stack.proxy = ProxyServer([str(binary_path()), "run", "--config", str(stack.config_dir),
                                   "--listen", "127.0.0.1:0"] + list(run_args or []),
                                  tmp_dir / "run.stderr.log")
        stack.proxy.wait_ready(STARTUP_TIMEOUT)
        stack.wait_ready()
        return stack
    except BaseException:
        stack.stop()
        raise


def cached_fields(stack: Stack) -> dict[str, set[str]]:
    """{type: {field, ...}} as the cache's entity configs say (what the proxy can answer)."""
    out = {}
    for path in sorted((stack.config_dir / "entity-configs").glob("*.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        fields = config["fields"]
        out[path.stem] = set(fields if isinstance(fields, list) else fields.keys()) | {"id"}
    return out


def names_only_fields(stack: Stack) -> dict[str, set[str]]:
    """{type: {"id", display field}} of the names-only tables the cache holds for link
    targets its configs leave out (as `status` lists them; columns from the database)."""
    names = [t["entity_type"] for t in stack.status()["types"] if t.get("names_only")]
    out = {}
    db = sqlite3.connect(stack.config_dir / "cache.sqlite", timeout=30)
    try:
        for entity_type in names:
            columns = {row[1] for row in db.execute('PRAGMA table_info("%s")' % entity_type)}
            out[entity_type] = columns - {"__retired"}
    finally:
        db.close()
    return out


# The field that names a record in links, as the cache (and the simulated site) choose it.
DISPLAY_FIRST = {"Task": "content", "Note": "subject", "Reply": "content", "HumanUser": "name",
                 "ApiUser": "firstname", "Project": "name", "Group": "code", "Department": "name",
                 "Attachment": "filename", "EventLogEntry": "description"}
TEXT_TYPES = {"text", "list", "status_list", "entity_type", "color", "uuid", "password", "footage",
              "calculated"}


def display_field(schema_fields: dict, entity_type: str) -> str | None:
    fields = schema_fields.get(entity_type, {})
    first = DISPLAY_FIRST.get(entity_type)
    chosen = first if first in fields else next(
        (f for f in ("code", "name", "title", "content") if f in fields), None)
    if chosen is None or fields[chosen]["data_type"]["value"] not in TEXT_TYPES:
        return None
    return chosen


def every_cached_field(stack: Stack, entity_type: str) -> list[str]:
    """Every field the cache holds of `entity_type`, sorted: what a comparison with the
    site returns so that no field, and no link's name, goes unchecked."""
    return sorted(cached_fields(stack)[entity_type])


def path_is_cached(cached: dict, schema_fields: dict, entity_type: str, path: str,
                   names: dict | None = None) -> bool | None:
    """Whether the cache holds every hop of `path` (True), or some hop exists on the site
    only (False); None when the path names something neither has (a fault either way).
    `names` ({type: fields}, see names_only_fields) are the names-only tables: a hop may
    land on one and name what it holds.  A path ending in a link the cache can't name
    every target of (a type with no display field it holds) is not cached either."""
    names = names or {}
    parts = path.split(".")
    current = entity_type
    answer = True
    for i in range(0, len(parts), 2):
        field = parts[i]
        if current not in schema_fields or field not in schema_fields[current]:
            return None
        held = cached.get(current) if i == 0 else cached.get(current, names.get(current))
        if held is None or field not in held:
            answer = False
        if i + 1 < len(parts):
            current = parts[i + 1]
    definition = schema_fields[current][parts[-1]]
    if answer and definition["data_type"]["value"] in ("entity", "multi_entity"):
        valid = definition.get("properties", {}).get("valid_types", {}).get("value") or []
        for target in valid:
            if target not in schema_fields or target in names:
                continue
            display = display_field(schema_fields, target)
            if display is None or target not in cached or display not in cached[target]:
                return False
    return answer


# -- comparing answers ----------------------------------------------------------------------------


def short(value, limit=700) -> str:
    """`value`'s repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def first_difference(got, expected) -> str:
    """Where two outcomes (("ok", value) or (kind, message)) of one call part: the records
    only one side found, or the fields in which the first differing record differs."""
    if got[0] != expected[0] or got[0] != "ok":
        return "proxy %s\n    site  %s" % (short(got), short(expected))
    g, e = got[1], expected[1]
    if isinstance(g, list) and isinstance(e, list):
        if len(g) != len(e):
            gi, ei = [r.get("id") for r in g], [r.get("id") for r in e]
            return ("proxy %d records, site %d; only in proxy %s; only at site %s"
                    % (len(g), len(e), sorted(set(gi) - set(ei))[:10], sorted(set(ei) - set(gi))[:10]))
        for i, (a, b) in enumerate(zip(g, e)):
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
                    keys = [k for k in a if a[k] != b[k]]
                    return "record #%d (%s %s) differs in %s:\n    proxy %s\n    site  %s" % (
                        i, b.get("type"), b.get("id"), keys, short({k: a[k] for k in keys}),
                        short({k: b[k] for k in keys}))
                return "record #%d differs:\n    proxy %r\n    site  %r" % (i, a, b)
    return "proxy %s\n    site  %s" % (short(g), short(e))


def only_names_differ(got, expected) -> bool:
    """Whether the proxy's answer is the site's but for link names (and summary group
    names) it left null: how a cache that can't name some links answers."""
    if isinstance(got, dict) and isinstance(expected, dict):
        if got.keys() != expected.keys():
            return False
        link = set(got) == {"type", "id", "name"}
        for key in got:
            if (key == "name" and link and got[key] is None) or (key == "group_name" and not got[key]):
                continue
            if not only_names_differ(got[key], expected[key]):
                return False
        return True
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(only_names_differ(a, b) for a, b in zip(got, expected))
    return got == expected
