"""Benchmark: can one caller starve the proxy? (issue 12, "limits no caller can break")

On a simulated site with a cache in front of it, simple cached reads (a find by id,
through raw keep-alive HTTP) are timed alone, then while four other requests run
reads far over the proxy's time budget (an `or` of 4,000 `contains` conditions on a
deep path each, again and again, from one caller: no list can stand in for them, and
they stay under the 5,000-condition limit, so each runs on the engine until the budget
stops it and then goes to the site). The figure is the simple reads' p50 and p99 in
both phases and their ratio, measured in the same run; also how long the heavy reads
took and who answered them (over budget, they go to the site).

    .venv/bin/python bench/starvation.py [--size medium] [--seconds 20] [--database postgresql://...]

`--database` is passed to `setup` (default: an SQLite file in the cache's folder);
give an empty PostgreSQL database of its own. Builds the release binary it runs;
needs the venv of tests/compat (`bash tests/compat/run.sh --co -q` makes it).
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import BIN, start, wait_ready  # noqa: E402


def post(conn, body):
    conn.request("POST", "/api3/json", body, {"content-type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="medium")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--conditions", type=int, default=4_000)
    parser.add_argument("--database", help="the cache's database, as setup takes it")
    args = parser.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "shotgun-cache"], check=True)
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        site, site_url = start([BIN, "sim", "--generate", args.size, "--listen", "127.0.0.1:0", "--log", "warn",
                                "--script", "cache:ck", "--script", "bench:bk", "--script", "heavy:hk"],
                               "listening on")
        procs.append(site)
        config = os.path.join(tmp, "cache")
        subprocess.run([BIN, "setup", "--config", config, "--site", site_url, "--script-name", "cache",
                        "--api-key", "ck", "--types", "Project,Sequence,Shot,Asset,Task", "--yes"]
                       + (["--database", args.database] if args.database else []), check=True, capture_output=True)
        run, proxy_url = start([BIN, "run", "--config", config, "--listen", "127.0.0.1:0", "--log", "warn"],
                               "serving on")
        procs.append(run)
        wait_ready(config)
        host = proxy_url.split("//")[1]

        simple = json.dumps({"method_name": "read", "params": [{"script_name": "bench", "script_key": "bk"}, {
            "type": "Shot", "return_fields": ["code", "sg_status_list", "sg_sequence"],
            "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [7]}]},
            "paging": {"entities_per_page": 1, "current_page": 1}, "return_paging_info_without_counts": True}]})
        heavy = json.dumps({"method_name": "read", "params": [{"script_name": "heavy", "script_key": "hk"}, {
            "type": "Task", "return_fields": ["content", "entity"],
            "filters": {"logical_operator": "or", "conditions": [
                {"path": "entity.Shot.sg_sequence.Sequence.code", "relation": "contains", "values": ["zz%05d" % i]}
                for i in range(args.conditions)]},
            "paging": {"entities_per_page": 500, "current_page": 1}, "return_paging_info_without_counts": True}]})

        def simple_reads(seconds):
            conn = http.client.HTTPConnection(host, timeout=600)
            post(conn, simple)  # the caller's verdict
            times = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                status, body = post(conn, simple)
                times.append((time.perf_counter() - t0) * 1000)
                assert status == 200 and b'"entities"' in body, body[:200]
            conn.close()
            return times

        alone = simple_reads(args.seconds)
        stop = threading.Event()
        started = time.perf_counter()
        heavy_times = []

        def hammer():
            conn = http.client.HTTPConnection(host, timeout=600)
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    status, body = post(conn, heavy)
                except OSError:
                    return  # stopped at the end of the run
                heavy_times.append(((time.perf_counter() - t0), status, body[:60]))

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the four heavy reads get going
        loaded = simple_reads(args.seconds)
        loaded_for = time.perf_counter() - started
        stop.set()  # the heavy reads still at the site are cut off with the processes

        print("store: %s, site: %s, %.0f s of simple reads in each phase (%d alone, %d loaded)"
              % (args.database or "SQLite", args.size, args.seconds, len(alone), len(loaded)))
        for name, times in (("alone", alone), ("with 4 heavy reads", loaded)):
            print("  simple find by id, %-19s p50 %7.2f ms  p99 %7.2f ms  max %8.2f ms"
                  % (name + ":", statistics.median(times), percentile(times, 99), max(times)))
        print("  p99 ratio (loaded / alone): %.2f" % (percentile(loaded, 99) / percentile(alone, 99)))
        durations = [d for d, _, _ in heavy_times]
        print("  heavy reads: %d of them answered in the %.1f s of the loaded phase%s"
              % (len(durations), loaded_for, (", median %.2f s, max %.2f s; the first reply starts %r"
                                             % (statistics.median(durations), max(durations), heavy_times[0][2]))
                 if durations else " (all still at the site)"))
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
