"""Benchmark of the simulated site (issue 3): how long `shotgun-cache sim
--generate SIZE` takes to start, and how fast a `read` paged through every Shot
(500 a page, keep-alive HTTP, no latency) streams records.

    python3 bench/sim_startup_and_paging.py [--size large] [--runs 3] [--bin target/release/shotgun-cache]

Prints the start-up time and, for each run, records per second; then the
median of the runs. Uses only the standard library (raw HTTP and JSON, so the
figure is the site's, not a client library's).
"""

import argparse
import http.client
import json
import statistics
import subprocess
import time


def read_page(conn, page, after):
    body = json.dumps({
        "method_name": "read",
        "params": [
            {"script_name": "bench", "script_key": "bench"},
            {"type": "Shot", "return_fields": ["code", "sg_status_list", "sg_sequence", "project", "description"],
             "filters": {"logical_operator": "and", "conditions": []},
             "paging": {"entities_per_page": 500, "current_page": page},
             "return_paging_info_without_counts": True, "api_return_image_urls": True},
        ],
    })
    conn.request("POST", "/api3/json", body, {"content-type": "application/json"})
    reply = json.loads(conn.getresponse().read())
    results = reply["results"]
    return results["entities"], results["paging_info"]["has_next_page"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="large")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bin", default="target/release/shotgun-cache")
    args = parser.parse_args()
    started = time.monotonic()
    proc = subprocess.Popen(
        [args.bin, "sim", "--generate", args.size, "--listen", "127.0.0.1:0", "--script", "bench:bench", "--log", "warn"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        startup = time.monotonic() - started
        port = int(line.rsplit(":", 1)[1])
        print(f"start-up with --generate {args.size}: {startup:.1f} s")
        rates = []
        for run in range(args.runs):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            t0 = time.monotonic()
            total, page, more = 0, 1, True
            while more:
                entities, more = read_page(conn, page, None)
                total += len(entities)
                page += 1
            secs = time.monotonic() - t0
            rates.append(total / secs)
            print(f"run {run + 1}: {total} Shots in {secs:.2f} s = {total / secs:,.0f} records/s")
        print(f"median: {statistics.median(rates):,.0f} records/s over {args.runs} runs")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
