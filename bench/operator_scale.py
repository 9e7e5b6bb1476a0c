"""The operator at scale on the emulated cluster: many resources applied at once, many runs.

Starts tests.cluster's emulated cluster in this process (a node big enough for --count small
pods, bench/standin first on the pods' PATH so that a pod's `ict` is a shell script printing one
epoch line a second for --epochs seconds), applies the CRD, starts `ict operator` as a
subprocess watching one namespace, lets it idle (the baseline), then creates --count
ImageClassifierTrainings at once from a thread pool and measures:
  - creation -> Job: from each create request's sending (and from the server storing the
    resource) to the server storing its Job, taken by a listener on the cluster's store (no
    watch lag);
  - the operator's CPU seconds, RSS while the runs go on, and peak RSS (VmHWM), from /proc;
  - API requests of the operator per resource, counted at the server by verb and resource,
    less an idle operator's rate over the same time;
  - while the stand-ins run: status writes per resource per minute, and the time from the
    trainer's exit (pod status terminated) to phase Succeeded in the resource's status.
Not a test: it prints a table and a JSON summary; bench/RESULTS.md keeps the figures.

    .venv/bin/python bench/operator_scale.py                 # 200 resources, 30 s runs
    .venv/bin/python bench/operator_scale.py --count 20      # a quick look
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, only bench/ is on sys.path; the repository root makes `tests` importable.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.cluster.cluster import Cluster  # noqa: E402
from tests.cluster.node import NodeSettings  # noqa: E402
from tests.cluster.store import Change  # noqa: E402

CRD = ROOT / "crds" / "imageclassifiertrainings.littledata.dev.yaml"
STANDIN = ROOT / "bench" / "standin"
LABEL_TRAINING = "littledata.dev/training"  # ict_operator.builders.LABEL_TRAINING
BENCH_AGENT = "ict-bench"  # this script's User-Agent: its own requests are not the operator's
NOT_OPERATOR = (BENCH_AGENT, "kubectl")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Timeline:
    """When things happened in the store (time.monotonic()), per training name.

    Called on the cluster's thread for every stored change; the main thread reads it after
    the phase it measures is over.
    """

    namespace: str
    created: dict[str, float] = field(default_factory=dict)
    job: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    exited: dict[str, float] = field(default_factory=dict)
    succeeded: dict[str, float] = field(default_factory=dict)
    status_writes: dict[str, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )

    def __call__(self, change: Change) -> None:
        now = time.monotonic()
        obj, kind = change.obj, change.info.plural
        meta = obj["metadata"]
        if meta.get("namespace") != self.namespace:
            return
        if kind == "imageclassifiertrainings":
            name = meta["name"]
            if change.type == "ADDED":
                self.created.setdefault(name, now)
            status = obj.get("status") or {}
            if change.old is not None and status != (change.old.get("status") or {}):
                self.status_writes[name].append(now)
            if status.get("phase") == "Succeeded":
                self.succeeded.setdefault(name, now)
        elif kind == "jobs" and change.type == "ADDED":
            self.job.setdefault(meta.get("labels", {}).get(LABEL_TRAINING, ""), now)
        elif kind == "pods":
            name = meta.get("labels", {}).get(LABEL_TRAINING, "")
            for container in (obj.get("status") or {}).get("containerStatuses") or []:
                state = container.get("state") or {}
                if "running" in state:
                    self.running.setdefault(name, now)
                if "terminated" in state:
                    self.exited.setdefault(name, now)

    def running_now(self) -> int:
        return len(set(self.running) - set(self.exited))


@dataclass
class Sample:
    at: float
    rss_mb: float
    threads: int
    running: int


def proc(pid: int) -> dict[str, float]:
    """The process's RSS and peak RSS (MB), threads and CPU seconds (user + system)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "cpu_s": (int(stat[11]) + int(stat[12])) / CLOCK_TICKS,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def operator_requests(counts: collections.Counter) -> collections.Counter:
    """(verb, resource) -> requests, of every client but this script and kubectl."""
    mine: collections.Counter = collections.Counter()
    for (client, verb, resource), n in counts.items():
        if client not in NOT_OPERATOR:
            mine[verb, resource] += n
    return mine


def training(name: str, epochs: int) -> dict:
    return {
        "apiVersion": "littledata.dev/v1alpha1",
        "kind": "ImageClassifierTraining",
        "metadata": {"name": name},
        "spec": {
            "strategy": "scratch",
            "dataset": {"uri": "s3://bench-data/sample"},
            "output": {"uri": f"s3://bench-runs/{name}"},
            "model": {"imageSize": 32},
            "training": {"epochs": epochs, "batchSize": 8},
        },
    }


def api_client(kubeconfig: Path, pool: int):
    import kubernetes

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = BENCH_AGENT
    return kubernetes.client.CustomObjectsApi(client)


def create_all(api, namespace: str, bodies: list[dict], threads: int) -> dict[str, float]:
    """Creates every body at once from a thread pool; returns when each request was sent."""
    sent: dict[str, float] = {}

    def create(body: dict) -> None:
        sent[body["metadata"]["name"]] = time.monotonic()
        api.create_namespaced_custom_object(
            "littledata.dev", "v1alpha1", namespace, "imageclassifiertrainings", body
        )

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, bodies))
    return sent


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.1)


def start_operator(cluster: Cluster, namespace: str, status_interval: float, log: Path):
    command = [
        *(sys.executable, "-m", "ict_trainer.cli", "operator"),
        *("--namespace", namespace, "--trainer-image", "ict-trainer:bench"),
        *("--default-cpu", "10m", "--default-memory", "16Mi"),
        *("--health-port", "0", "--status-interval", str(status_interval)),
    ]
    with log.open("w") as out:
        return subprocess.Popen(command, env=cluster.env(), stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sampler(pid: int, timeline: Timeline, samples: list[Sample], done: threading.Event) -> None:
    while not done.wait(0.5):
        figures = proc(pid)
        samples.append(
            Sample(time.monotonic(), figures["rss_mb"], figures["threads"], timeline.running_now())
        )


def profile_thread(thread: threading.Thread, done: threading.Event, hits: collections.Counter):
    """Samples `thread`'s stack every 5 ms: hits[function] counts samples with it on the stack
    (tests/cluster, kmock and aiohttp functions only), hits["<samples>"] counts all."""
    while not done.wait(0.005):
        frame = sys._current_frames().get(thread.ident or 0)
        hits["<samples>"] += 1
        seen = set()
        while frame is not None:
            code = frame.f_code
            where = code.co_filename
            if "tests/cluster" in where or "kmock" in where or "aiohttp/web" in where:
                seen.add(f"{Path(where).name}:{code.co_name}")
            frame = frame.f_back
        hits.update(seen)


def measure(args: argparse.Namespace, root: Path) -> dict:
    node = NodeSettings(
        capacity={"cpu": "64", "memory": "64Gi", "pods": str(args.count + 50)},
        path_prefix=[str(STANDIN)],
    )
    (root / "cluster").mkdir()
    cluster = Cluster(root / "cluster", node).start()
    try:
        cluster.kubectl("apply", "--validate=false", "-f", str(CRD))
        namespace = cluster.create_namespace("bench")
        timeline = Timeline(namespace)
        store = cluster.store
        assert store is not None
        cluster.call(lambda: store.listeners.append(timeline))
        operator = start_operator(cluster, namespace, args.status_interval, root / "operator.log")
        hits: collections.Counter = collections.Counter()
        done = threading.Event()
        if args.profile_cluster:
            assert cluster._thread is not None
            threading.Thread(
                target=profile_thread, args=(cluster._thread, done, hits), daemon=True
            ).start()
        try:
            results = run_phases(args, cluster, namespace, timeline, operator)
            done.set()
            if hits:
                total = hits.pop("<samples>")
                results["clusterProfile"] = {
                    name: round(n / total, 3) for name, n in hits.most_common(25)
                }
            return results
        finally:
            stop(operator)
            print(f"operator log: {root / 'operator.log'} (kept with --keep)", file=sys.stderr)
    finally:
        cluster.stop()  # kills every pod; deleting the namespace first takes long with 200


def run_phases(args, cluster: Cluster, namespace: str, timeline: Timeline, operator) -> dict:
    pid = operator.pid
    watched = {"imageclassifiertrainings", "jobs", "pods"}
    wait_for(
        lambda: watched <= {r for (v, r), n in operator_requests(cluster.requests()).items()
                            if v == "watch"},
        60, "the operator's watches",
    )  # fmt: skip
    time.sleep(2)  # its startup settles
    ready, ready_proc, ready_counts = time.monotonic(), proc(pid), cluster.requests()
    cluster_cpu = [time.process_time()]  # this process: the emulated cluster, mostly
    time.sleep(args.idle)
    idle_end = time.monotonic()
    idle_s = idle_end - ready
    idle_proc, idle_counts = proc(pid), cluster.requests()
    idle_rate = sum(operator_requests(idle_counts - ready_counts).values()) / idle_s

    samples: list[Sample] = []
    done = threading.Event()
    threading.Thread(target=sampler, args=(pid, timeline, samples, done), daemon=True).start()
    names = [f"bench-{n:03d}" for n in range(args.count)]
    api = api_client(cluster.kubeconfig, args.threads)
    started = time.monotonic()
    sent = create_all(api, namespace, [training(n, args.epochs) for n in names], args.threads)
    created_s = time.monotonic() - started
    wait_for(lambda: len(timeline.job) >= len(names), 300, "every Job")
    jobs_s = time.monotonic() - started
    jobs_proc = proc(pid)
    cluster_cpu.append(time.process_time())
    wait_for(
        lambda: len(timeline.succeeded) >= len(names), args.epochs + 600, "every run's success"
    )
    end = time.monotonic()
    time.sleep(3)  # the daemons of finished runs exit
    done.set()
    end_proc, end_counts = proc(pid), cluster.requests()
    cluster_cpu.append(time.process_time())

    per_resource = operator_requests(end_counts - idle_counts)
    baseline = idle_rate * (end - idle_end)
    sent_to_job = [timeline.job[n] - sent[n] for n in names]
    stored_to_job = [timeline.job[n] - timeline.created[n] for n in names]
    exit_to_done = [timeline.succeeded[n] - timeline.exited[n] for n in names]
    writes_per_min = []
    for n in names:
        begin, finish = timeline.running[n], timeline.exited[n]
        writes = [t for t in timeline.status_writes[n] if begin < t <= finish]
        writes_per_min.append(len(writes) / ((finish - begin) / 60))
    busy = [s for s in samples if s.running >= 0.95 * len(names)]
    return {
        "count": len(names),
        "epochs": args.epochs,
        "statusInterval": args.status_interval,
        "createCallsSeconds": round(created_s, 2),
        "allJobsSeconds": round(jobs_s, 2),
        "sentToJob": quantiles(sent_to_job),
        "storedToJob": quantiles(stored_to_job),
        "exitToSucceeded": quantiles(exit_to_done),
        "statusWritesPerResourcePerMinute": quantiles(writes_per_min),
        "rssMB": {
            "idle": round(idle_proc["rss_mb"], 1),
            "afterJobs": round(jobs_proc["rss_mb"], 1),
            "whileRunningMedian": round(percentile([s.rss_mb for s in busy], 50), 1)
            if busy
            else None,
            "whileRunningMax": round(max(s.rss_mb for s in busy), 1) if busy else None,
            "peak": round(end_proc["hwm_mb"], 1),
        },
        "samplesWhileRunning": len(busy),
        "threadsMax": max(s.threads for s in samples),
        "cpuSeconds": {
            "startup": round(ready_proc["cpu_s"], 2),
            "idle": round(idle_proc["cpu_s"] - ready_proc["cpu_s"], 2),
            "createToJobs": round(jobs_proc["cpu_s"] - idle_proc["cpu_s"], 2),
            "runs": round(end_proc["cpu_s"] - jobs_proc["cpu_s"], 2),
            "runsWallSeconds": round(end - started - jobs_s, 1),
            "clusterIdleToJobs": round(cluster_cpu[1] - cluster_cpu[0], 2),
            "clusterRuns": round(cluster_cpu[2] - cluster_cpu[1], 2),
        },
        "idleRequestsPerSecond": round(idle_rate, 3),
        "requests": {f"{v} {r}": n for (v, r), n in per_resource.most_common()},
        "requestsPerResource": round((sum(per_resource.values()) - baseline) / len(names), 2),
        "loadAverageAtEnd": os.getloadavg()[0],
    }


def quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def table(r: dict) -> str:
    rss, cpu, n = r["rssMB"], r["cpuSeconds"], r["count"]
    rows = [
        ("create sent -> Job stored, p50 / p99 (target 0.5 / 2 s)",
         f"{r['sentToJob']['p50']} s / {r['sentToJob']['p99']} s (max {r['sentToJob']['max']})"),
        ("resource stored -> Job stored, p50 / p99",
         f"{r['storedToJob']['p50']} s / {r['storedToJob']['p99']} s"),
        (f"{n} create calls returned / all {n} Jobs stored after",
         f"{r['createCallsSeconds']} s / {r['allJobsSeconds']} s"),
        ("operator peak RSS, VmHWM (target 150 MB)", f"{rss['peak']} MB"),
        ("operator RSS: idle / after the Jobs / while runs go on (median, max)",
         f"{rss['idle']} / {rss['afterJobs']} / {rss['whileRunningMedian']}, "
         f"{rss['whileRunningMax']} MB"),
        ("operator threads, max", str(r["threadsMax"])),
        ("operator CPU: startup / idle / create->Jobs / runs",
         f"{cpu['startup']} / {cpu['idle']} / {cpu['createToJobs']} / {cpu['runs']} s "
         f"(runs phase {cpu['runsWallSeconds']} s wall)"),
        ("emulated cluster (this process) CPU: idle+create->Jobs / runs",
         f"{cpu['clusterIdleToJobs']} / {cpu['clusterRuns']} s"),
        ("API requests per resource (idle rate subtracted)", str(r["requestsPerResource"])),
        (f"status writes per resource per minute while running (interval {r['statusInterval']} s)",
         f"p50 {r['statusWritesPerResourcePerMinute']['p50']}, "
         f"p99 {r['statusWritesPerResourcePerMinute']['p99']}"),
        ("trainer exit -> phase Succeeded, p50 / p99",
         f"{r['exitToSucceeded']['p50']} s / {r['exitToSucceeded']['p99']} s"),
    ]  # fmt: skip
    lines = ["| measurement | figure |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| operator requests (verb resource) | total | per resource |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {v / n:.2f} |" for k, v in r["requests"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="resources applied at once")
    parser.add_argument("--epochs", type=int, default=30, help="seconds each stand-in runs")
    parser.add_argument("--status-interval", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle baseline")
    parser.add_argument("--threads", type=int, default=16, help="parallel create calls")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--profile-cluster",
        action="store_true",
        help="sample the emulated cluster's thread: the share of time in each of its functions",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ict-operator-scale-"))
    try:
        results = measure(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
