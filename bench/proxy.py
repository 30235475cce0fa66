"""Benchmarks of the proxy (issue 5), on a simulated site:

1. Against the floor: `shotgun_api3` `find` through the proxy returning 1, 100
   and 500 records, against a server that sends the very same reply bytes
   doing no work (crates/server/examples/floor.rs), alternated in one run;
   medians and their ratio (target: at most 1.25).
2. Throughput: requests per second with 64 keep-alive connections (wrk) for a
   find-by-id and for a 100-record filtered find.
3. Memory: the resident size of the `run` process.

    .venv/bin/python bench/proxy.py [--size large] [--runs 30] [--database postgresql://...]

`--database` is passed to `setup` (default: an SQLite file in the cache's
folder); a PostgreSQL database given there should be an empty one of its own.

Builds the release binaries it runs (`shotgun-cache`, and the floor server
`crates/server/examples/floor.rs`) and installs `wrk` with apt-get when it is
missing and the script runs as root; needs the venv of tests/compat
(`bash tests/compat/run.sh --co -q` makes it).
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import shotgun_api3

BIN = "target/release/shotgun-cache"
FLOOR = "target/release/examples/floor"


def start(cmd, marker):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("%s exited" % cmd[:3])
        if line.startswith(marker):
            return proc, line.split()[-1]


def raw(url, body):
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host)
    conn.request("POST", "/api3/json", json.dumps(body), {"content-type": "application/json"})
    return conn.getresponse().read()


def wait_ready(config):
    while True:
        out = subprocess.run([BIN, "status", "--config", config, "--json", "--log", "error"], capture_output=True, text=True)
        if out.returncode == 0:
            status = json.loads(out.stdout)
            if status["types"] and all(t["state"] == "ready" for t in status["types"]):
                return status
        time.sleep(1)


def prepare():
    """The release binaries, built (quick when they are up to date), and wrk."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "shotgun-cache"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sg-server", "--example", "floor"], check=True)
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install wrk)")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        raise SystemExit("the throughput part needs wrk on the PATH (apt-get install wrk)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="large")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database", help="the cache's database, as setup takes it")
    args = parser.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    prepare()
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        site, site_url = start([BIN, "sim", "--generate", args.size, "--listen", "127.0.0.1:0", "--log", "warn",
                                "--script", "cache:ck", "--script", "bench:bk"], "listening on")
        procs.append(site)
        config = os.path.join(tmp, "cache")
        subprocess.run([BIN, "setup", "--config", config, "--site", site_url, "--script-name", "cache", "--api-key", "ck",
                        "--types", "Project,Sequence,Shot,Asset,Task,Version,HumanUser", "--yes"]
                       + (["--database", args.database] if args.database else []), check=True,
                       capture_output=True)
        started = time.monotonic()
        run, proxy_url = start([BIN, "run", "--config", config, "--listen", "127.0.0.1:0", "--log", "warn"], "serving on")
        procs.append(run)
        status = wait_ready(config)
        records = sum(t["records"] + t["retired"] for t in status["types"])
        print(f"import of {records:,} records: {time.monotonic() - started:.1f} s")

        auth = {"script_name": "bench", "script_key": "bk"}
        print("\n1. find through the proxy against the floor (medians of %d alternated runs)" % args.runs)
        for limit in (1, 100, 500):
            params = {"type": "Shot", "return_fields": ["code", "sg_status_list", "sg_sequence", "project", "description"],
                      "filters": {"logical_operator": "and", "conditions": []},
                      "paging": {"entities_per_page": limit, "current_page": 1},
                      "api_return_image_urls": True, "return_paging_info_without_counts": True}
            reply = raw(proxy_url, {"method_name": "read", "params": [auth, params]})
            path = os.path.join(tmp, f"reply-{limit}.json")
            with open(path, "wb") as f:
                f.write(reply)
            floor, floor_url = start([FLOOR, path], "listening on")
            procs.append(floor)
            clients = {"proxy": shotgun_api3.Shotgun(proxy_url, "bench", "bk"),
                       "floor": shotgun_api3.Shotgun(floor_url, "bench", "bk")}
            times = {"proxy": [], "floor": []}
            for _ in range(args.runs):
                for name, sg in clients.items():
                    t0 = time.perf_counter()
                    got = sg.find("Shot", [], params["return_fields"], limit=limit)
                    times[name].append((time.perf_counter() - t0) * 1000)
                    assert len(got) == limit
            p, fl = statistics.median(times["proxy"]), statistics.median(times["floor"])
            print(f"   {limit:>3} records: proxy {p:.2f} ms, floor {fl:.2f} ms, ratio {p / fl:.2f}")
            floor.terminate()

        print("\n2. throughput, 64 keep-alive connections, 10 s each (wrk)")
        one = json.dumps({"method_name": "read", "params": [auth, {"type": "Shot", "return_fields": ["code", "sg_status_list"],
            "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [7]}]},
            "paging": {"entities_per_page": 1, "current_page": 1}, "return_paging_info_without_counts": True}]})
        hundred = json.dumps({"method_name": "read", "params": [auth, {"type": "Shot",
            "return_fields": ["code", "sg_status_list", "sg_sequence", "project"],
            "filters": {"logical_operator": "and", "conditions": [{"path": "sg_status_list", "relation": "is", "values": ["ip"]}]},
            "paging": {"entities_per_page": 100, "current_page": 1}, "return_paging_info_without_counts": True}]})
        for name, body in (("find by id", one), ("100-record filtered find", hundred)):
            script = os.path.join(tmp, "post.lua")
            with open(script, "w") as f:
                f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' % json.dumps(body))
            out = subprocess.run(["wrk", "-t2", "-c64", "-d10s", "-s", script, proxy_url + "/api3/json"],
                                 capture_output=True, text=True).stdout
            rps = [l for l in out.splitlines() if "Requests/sec" in l]
            print(f"   {name}: {rps[0].split()[-1] if rps else out}")

        status = open(f"/proc/{run.pid}/status").read()
        kb = lambda key: int(status.split(key + ":")[1].split()[0])
        print(f"\n3. resident size of run: {kb('VmRSS') / 1024:.0f} MB "
              f"(anonymous {kb('RssAnon') / 1024:.0f} MB, mapped files {kb('RssFile') / 1024:.0f} MB, "
              f"shared memory {kb('RssShmem') / 1024:.0f} MB)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
