"""The web app (`dittomusic ui`) against issue 22's targets: time to an interactive page, a DITTO-2
intensity job from the page against the same job on the CLI, and four concurrent jobs. Prints JSON.

    python benchmarks/app_latency.py [--quick] [--starts 2] [--runs 3] [--iters 5] [--seconds 3]

Targets (issue 22), on 2 cores:
  - the page is interactive <= 5 s after `dittomusic ui` starts, with the model loaded once per process;
  - a DITTO-2 intensity job submitted from the page returns audio <= 2 s later than the same job on the CLI;
  - four concurrent jobs all complete and are served in order; peak memory during them <= 1.5x that of one job.

Start-up: `python -m dittomusic ui --port P` as a new process, with headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright) launched before it and not counted, after one unmeasured
start and CLI run (--warmup: the file cache). Seconds from the process start to the first HTTP 200
of the page, and to the page interactive (Chromium loaded it and the Generate tab's button is there
and enabled); the server's CPU seconds at both (with those of the children it has waited for: the
process that reads the task and method registries for the page), which on a shared machine say
what the wall time cannot. Every checkpoint file the server loads is logged by a probe (a
sitecustomize on the server's PYTHONPATH that wraps dittomusic.checkpoint.load_tensors): the model
is loaded once per process when no job after the first (which loads DITTO-2's student and teacher)
loads anything. The base model loads in the background once a page is open: its load is in the
start-up phase or the first job's, by when it began.

Jobs: the same DITTO-2 intensity job (preset, seed, clip length and optimizer steps alike) through
the page's own API route (/intensity: gradio's queue, the page's job code) with gradio_client, and
as `dittomusic control intensity` in a new process; app and CLI take turns, run by run. The app's
first job, sent as soon as the page is interactive, loads DITTO-2's student and teacher (and waits
for the base model if its background load is not done) and is timed apart. The target
compares the app's job, submit to audio downloaded, with the CLI command's wall time; the app's
overhead over the CLI's own in-process run time (its report's wall_s) is printed beside it, and the
CPU seconds of each (the server's for the app's job, the child's for the CLI).

Concurrency: four jobs (seeds 11-14) go into the queue one after the other (each accepted before
the next is sent), then wait on the model's one slot together; the order they complete in must be
the order they were sent. Peak memory: resident memory of the server's process tree, sampled
every 20 ms and taken from the kernel's high-water mark (VmHWM, reset first), during one job
alone and during the four.

On a shared machine the wall times include waiting for a core: the load average before and after
is printed with them, and the CPU seconds beside them. --quick: one start, one run, no warm-up,
2 optimizer steps of a 1.5 s clip.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TARGET_INTERACTIVE_S = 5.0
TARGET_JOB_EXTRA_S = 2.0
TARGET_MEMORY_RATIO = 1.5
CONCURRENT_SEEDS = (11, 12, 13, 14)
# the page is interactive once gradio's frontend has built it: the Generate tab's button is shown and enabled
READY_JS = ("() => { const b = document.querySelector('#generate-run');"
            " return !!b && !b.disabled && b.offsetParent !== null; }")
# the page's intensity inputs, in the order of the /intensity route after the method, the second
# control and its weight (ui.py _wire_control: the shared settings, then every tab's inputs)
COMMON = ("Style", "Instruments", "Tempo", "Mode", None, "Seed", "Sampler steps", "Guidance", "Clip length (s)",
          "Optimization steps (0: the task's default)")
INTENSITY = ("Target from", "Preset", "Quiet end (dB)", "Loud end (dB)")

PROBE = '''"""Written by benchmarks/app_latency.py: log each checkpoint file this process loads."""
import importlib.abc, importlib.machinery, os, sys, time


class _LoadLog(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "dittomusic.checkpoint":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            load = module.load_tensors

            def load_tensors(p, *a, **kw):
                t0 = time.time()
                out = load(p, *a, **kw)
                with open(os.environ["DITTOMUSIC_LOAD_LOG"], "a") as f:
                    f.write(f"{t0:.3f} {time.time() - t0:.3f} {p}\\n")
                return out

            module.load_tensors = load_tensors

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _LoadLog())
'''


# ------------------------------------------------------------------ processes

def tree_pids(root: int) -> list[int]:
    """root and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    return sum(_status_kb(p, "VmRSS") for p in tree_pids(root)) / 1024


def tree_hwm_mb(root: int) -> float:
    """The sum of the tree's peak resident sets since reset_hwm (an upper bound of the tree's peak)."""
    return sum(_status_kb(p, "VmHWM") for p in tree_pids(root)) / 1024


def reset_hwm(root: int) -> bool:
    """Reset the kernel's peak-RSS mark of each process in the tree (Linux: clear_refs 5)."""
    ok = True
    for p in tree_pids(root):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process and of the children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class RssSampler:
    """The peak resident memory (MB) of a process tree while in a `with` block: the larger of the
    sampled sum and the kernel's high-water marks (reset on entry)."""

    def __init__(self, root: int, every_s: float = 0.02):
        self.root, self.every_s = root, every_s
        self.sampled_mb = self.hwm_mb = 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.sampled_mb = max(self.sampled_mb, tree_rss_mb(self.root))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self.hwm_reset = reset_hwm(self.root)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sampled_mb = max(self.sampled_mb, tree_rss_mb(self.root))
        self.hwm_mb = tree_hwm_mb(self.root) if self.hwm_reset else 0.0

    @property
    def peak_mb(self) -> float:
        return max(self.sampled_mb, self.hwm_mb)


def chromium(tmp: Path) -> str:
    """The browser to launch: Chromium run as root raises its own threads' priority (nice -8), ahead of
    the server it measures; started without CAP_SYS_NICE it keeps the nice value it inherits."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return CHROMIUM
    wrapper = tmp / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec setpriv --inh-caps=-sys_nice --bounding-set=-sys_nice {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m dittomusic ui` in a process of its own, its checkpoint loads logged by PROBE."""

    def __init__(self, tmp: Path, model_args: list[str], n: int):
        self.dir = tmp / f"server{n}"
        (self.dir / "probe").mkdir(parents=True)
        (self.dir / "probe" / "sitecustomize.py").write_text(PROBE)
        self.load_log = self.dir / "loads.txt"
        self.load_log.touch()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.argv = [sys.executable, "-m", "dittomusic", "ui", "--port", str(self.port),
                     "--outputs", str(self.dir / "outputs"), *model_args]
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        env = dict(os.environ, DITTOMUSIC_LOAD_LOG=str(self.load_log))
        env["PYTHONPATH"] = os.pathsep.join([str(self.dir / "probe"), str(ROOT / "src"),
                                             *filter(None, [os.environ.get("PYTHONPATH")])])
        self.log = open(self.dir / "server.log", "w")  # noqa: SIM115 (the server's, closed by stop())
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return t0

    def wait_http(self, timeout_s: float) -> None:
        """Until the page answers 200; exits with the server's log if the process dies or time runs out.

        A refused connection (nothing listens yet) is retried every 20 ms; once the server accepts one,
        its answer is awaited, so a slow server is never sent a pile of requests it must still serve."""
        end = time.perf_counter() + timeout_s
        while time.perf_counter() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"dittomusic ui exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=max(1.0, end - time.perf_counter())) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit(f"dittomusic ui did not answer within {timeout_s:g} s:\n{self.tail()}")

    def loads(self) -> list[tuple[float, float, str]]:
        """(time, seconds, file) of each checkpoint load so far."""
        out = []
        for line in self.load_log.read_text().splitlines():
            t, s, path = line.split(" ", 2)
            out.append((float(t), float(s), path))
        return out

    def tail(self, n: int = 3000) -> str:
        self.log.flush()
        return (self.dir / "server.log").read_text()[-n:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------ measurements

def measure_start(browser, server: Server, timeout_s: float) -> dict:
    """Seconds from `dittomusic ui`'s start to the first HTTP 200 and to an interactive page."""
    page = browser.new_page()
    try:
        t0 = server.start()
        server.wait_http(timeout_s)
        http_s, http_cpu = time.perf_counter() - t0, cpu_s(server.proc.pid)
        page.goto(server.url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        page.wait_for_function(READY_JS, timeout=timeout_s * 1000, polling=20)
        interactive_s, at = time.perf_counter() - t0, time.time()
        return {"at": at, "http_200_s": round(http_s, 3), "interactive_s": round(interactive_s, 3),
                "server_cpu_s_http": round(http_cpu, 3), "server_cpu_s": round(cpu_s(server.proc.pid), 3)}
    finally:
        page.close()


def intensity_args(client, job: dict) -> list:
    """The /intensity route's arguments: the page's defaults, with the job's method, settings and preset."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/intensity"]["parameters"]
    labels = [p.get("label") for p in params]
    want = ["Method", None, None, *COMMON, *INTENSITY]
    bad = [(i, w, labels[i] if i < len(labels) else None) for i, w in enumerate(want)
           if w is not None and (i >= len(labels) or labels[i] != w)]
    if bad:  # the page changed: the positions below would set the wrong inputs
        raise SystemExit(f"/intensity's parameters are not where this script expects them: {bad}")
    args = [p.get("parameter_default") for p in params]
    n = 3 + len(COMMON)
    args[0] = "ditto2"
    args[3:n] = ["", [], "", "", "", job["seed"], job["steps"], job["guidance"], job["seconds"], job["iters"]]
    args[n:n + 4] = ["preset", job["preset"], job["low_db"], job["high_db"]]
    return args


def app_job(client, args: list, seed: int, timeout_s: float) -> dict:
    """Submit one job through the page's API route; seconds until its audio is back, and its report."""
    args = list(args)
    args[3 + COMMON.index("Seed")] = seed
    t0 = time.perf_counter()
    out = client.submit(*args, api_name="/intensity").result(timeout=timeout_s)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, **_result(out)}


def _result(out) -> dict:
    status, audio, *_rest = out
    files = out[4] or []
    report = next((f for f in files if str(f).endswith("report.json")), None)
    if not audio or not Path(audio).is_file() or report is None:
        raise SystemExit(f"the app's job returned no audio: {status!r}")
    rep = json.loads(Path(report).read_text())
    return {"report": rep, "audio": audio}


def cli_job(job: dict, model_args: list[str], tmp: Path) -> dict:
    """The same job as `dittomusic control intensity` in a new process: wall and CPU seconds, its report."""
    out = tmp / "cli"
    out.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "dittomusic", "control", "intensity", "--method", "ditto2",
            "--seed", str(job["seed"]), "--seconds", str(job["seconds"]), "--iters", str(job["iters"]),
            "--steps", str(job["steps"]), "--guidance", str(job["guidance"]), "--preset", job["preset"],
            "--low-db", str(job["low_db"]), "--high-db", str(job["high_db"]),
            "--out", str(out / "intensity.wav"), "--report", str(out / "report.json"), *model_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, check=False,
                       env=dict(os.environ, PYTHONPATH=_pythonpath()))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    rep = json.loads((out / "report.json").read_text())
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "report": rep, "argv": " ".join(["dittomusic", *argv[3:]]).replace(str(tmp), "TMP")}


def _pythonpath() -> str:
    return os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])


def concurrent_jobs(client, args: list, seeds, timeout_s: float) -> dict:
    """Jobs sent one after the other (each accepted into the queue before the next is sent), then
    all waiting together; the order they complete in, by seed."""
    from gradio_client.utils import Status

    jobs, done = [], {}
    t0 = time.perf_counter()
    for s in seeds:
        a = list(args)
        a[3 + COMMON.index("Seed")] = s
        j = client.submit(*a, api_name="/intensity")
        j.add_done_callback(lambda f, s=s: done.setdefault(s, time.perf_counter() - t0))
        end = time.perf_counter() + timeout_s
        while j.status().code in (Status.STARTING, Status.JOINING_QUEUE) and not j.done():
            if time.perf_counter() > end:
                raise SystemExit(f"the job with seed {s} was not accepted into the queue in {timeout_s:g} s")
            time.sleep(0.01)
        jobs.append((s, j))
    sent_s = time.perf_counter() - t0
    results = {s: _result(j.result(timeout=timeout_s)) for s, j in jobs}
    wall = time.perf_counter() - t0
    order = sorted(done, key=done.get)
    return {"submitted": list(seeds), "completed": order, "report_seeds": [results[s]["report"]["seed"] for s in order],
            "completion_s": [round(done[s], 3) for s in order], "sent_within_s": round(sent_s, 3),
            "wall_s": round(wall, 3)}


def served_in_order(submitted: list, completed: list) -> bool:
    return list(submitted) == list(completed)


def load_summary(loads: list[tuple[float, float, str]], interactive_at: float, later_jobs_at: float) -> dict:
    """Checkpoint loads by phase: until the page is interactive, from then to the end of the first job
    (DITTO-2's student and its teacher, loaded on first use; the base model, if its background load
    ends after the page is interactive), and later jobs. Loaded once per process: no job after the first loads anything. A file read twice is
    listed apart (DITTO-2's student is read for its metadata by distill/student.py bundled_teacher)."""
    def names(rows):
        return [Path(p).name for _, _, p in rows]

    startup = [r for r in loads if r[0] < interactive_at]
    first = [r for r in loads if interactive_at <= r[0] < later_jobs_at]
    later = [r for r in loads if r[0] >= later_jobs_at]
    files = [p for _, _, p in loads]
    return {"startup": names(startup), "to_first_job_done": names(first), "later_jobs": names(later),
            "startup_load_s": round(sum(s for _, s, _ in startup), 3),
            "files_read_twice": sorted({Path(p).name for p in files if files.count(p) > 1}),
            "loaded_once": not later}


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=2, help="Server starts timed (the last one serves the jobs).")
    ap.add_argument("--runs", type=int, default=3, help="App and CLI jobs timed, taking turns.")
    ap.add_argument("--warmup", type=int, default=1,
                    help="Unmeasured CLI runs and server starts first (file cache).")
    ap.add_argument("--iters", type=int, default=5, help="DITTO-2 optimizer steps a job.")
    ap.add_argument("--seconds", type=float, default=3.0, help="Clip length of a job.")
    ap.add_argument("--steps", type=int, default=20, help="Sampler steps (the page's default).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="Base model for the app and the CLI [default: bundled].")
    ap.add_argument("--student", default=None, help="DITTO-2 student for --model [default: bundled].")
    ap.add_argument("--vocoder", default=None, help="Vocoder for the app and the CLI [default: theirs].")
    ap.add_argument("--timeout", type=float, default=1800, help="Seconds any one wait may take.")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for the server and the CLI [default: unset, torch's choice].")
    ap.add_argument("--quick", action="store_true",
                    help="Smallest settings: one start, one run, no warm-up, 2 steps of a 1.5 s clip.")
    args = ap.parse_args(argv)
    if args.quick:
        args.starts, args.runs, args.warmup, args.iters, args.seconds = 1, 1, 0, 2, 1.5
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)")
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    model_args = [a for k, v in (("--model", args.model), ("--vocoder", args.vocoder)) if v for a in (k, v)]
    job = {"seed": args.seed, "seconds": args.seconds, "iters": args.iters, "steps": args.steps, "guidance": 3.0,
           "preset": "tanh-rise", "low_db": -38.0, "high_db": -18.0}
    run_args = model_args + (["--student", args.student] if args.student else [])  # the app's and the CLI's
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="app-latency-") as tmp_s, sync_playwright() as pw:
        tmp = Path(tmp_s)
        for _ in range(args.warmup):
            cli_job(job, run_args, tmp)
        browser = pw.chromium.launch(executable_path=chromium(tmp), headless=True)
        starts, server = [], None
        try:
            for n in range(args.warmup + args.starts):  # the warm-up starts first, unmeasured
                if server is not None:
                    server.stop()
                server = Server(tmp, run_args, n)
                row = measure_start(browser, server, args.timeout)
                if n >= args.warmup:
                    starts.append(row)
            browser.close()
            client = Client(server.url, verbose=False, analytics_enabled=False,
                            httpx_kwargs={"timeout": args.timeout}, download_files=str(tmp / "downloads"))
            api = intensity_args(client, job)
            pid = server.proc.pid
            start_mb = tree_rss_mb(pid)  # before DITTO-2's models are loaded

            cpu0 = cpu_s(pid)
            first = app_job(client, api, args.seed, args.timeout)
            first["cpu_s"] = cpu_s(pid) - cpu0
            later_at = time.time()

            app, cli, peaks = [], [], []
            for _ in range(args.runs):
                cpu0 = cpu_s(pid)
                with RssSampler(pid) as mem:
                    a = app_job(client, api, args.seed, args.timeout)
                a["cpu_s"] = cpu_s(pid) - cpu0
                app.append(a)
                peaks.append(mem)
                cli.append(cli_job(job, run_args, tmp))

            with RssSampler(pid) as mem4:
                four = concurrent_jobs(client, api, CONCURRENT_SEEDS, args.timeout)
            loads = load_summary(server.loads(), starts[-1]["at"], later_at)
            client.close()
        finally:
            if server is not None:
                server.stop()
            if browser.is_connected():
                browser.close()
    load_after = os.getloadavg()[0]

    interactive = [s["interactive_s"] for s in starts]
    app_wall = [a["wall_s"] for a in app]
    cli_wall = [c["wall_s"] for c in cli]
    cli_inproc = [c["report"]["wall_s"] for c in cli]
    extra = _median(app_wall) - _median(cli_wall)
    one_mb = max(m.peak_mb for m in peaks)
    ratio = mem4.peak_mb / one_mb
    metric = next(iter(app[0]["report"]["metrics"]))
    report = {
        "startup": {
            "argv": "dittomusic ui --port P" + "".join(f" {a}" for a in run_args),
            "browser": "chromium (system), headless, via playwright",
            "http_200_s": {"median": _median([s["http_200_s"] for s in starts]),
                           "runs": [s["http_200_s"] for s in starts]},
            "interactive_s": {"median": _median(interactive), "runs": interactive},
            "server_cpu_s": {"at_http_200": _median([s["server_cpu_s_http"] for s in starts]),
                             "at_interactive": _median([s["server_cpu_s"] for s in starts])},
            "model_loads": loads,
            "target_s": TARGET_INTERACTIVE_S,
            "meets_target": _median(interactive) <= TARGET_INTERACTIVE_S and loads["loaded_once"],
        },
        "job": {
            "settings": {**job, "method": "ditto2", "task": "intensity"},
            "cli_argv": cli[0]["argv"],
            "app_s": {"median": _median(app_wall), "runs": [round(w, 3) for w in app_wall]},
            "app_first_job_s": round(first["wall_s"], 3),
            "app_server_cpu_s": {"median": _median([a["cpu_s"] for a in app]), "first_job": round(first["cpu_s"], 3)},
            "app_in_process_s": {"median": _median([a["report"]["wall_s"] for a in app])},
            "cli_s": {"median": _median(cli_wall), "runs": [round(w, 3) for w in cli_wall]},
            "cli_cpu_s": {"median": _median([c["cpu_s"] for c in cli])},
            "cli_in_process_s": {"median": _median(cli_inproc)},
            "app_minus_cli_s": round(extra, 3),
            "app_minus_cli_in_process_s": round(_median(app_wall) - _median(cli_inproc), 3),
            "app_first_job_minus_cli_s": round(first["wall_s"] - _median(cli_wall), 3),
            # the same job: the same result on both sides
            metric: {"app": round(app[0]["report"]["metrics"][metric], 4),
                     "cli": round(cli[0]["report"]["metrics"][metric], 4)},
            "target_extra_s": TARGET_JOB_EXTRA_S,
            "meets_target": extra <= TARGET_JOB_EXTRA_S,
        },
        "concurrent": {
            **four,
            "served_in_order": served_in_order(four["submitted"], four["completed"]),
            "rss_after_start_mb": round(start_mb, 1),
            "peak_rss_one_job_mb": round(one_mb, 1),
            "peak_rss_four_jobs_mb": round(mem4.peak_mb, 1),
            "peak_ratio": round(ratio, 3),
            "hwm_reset": mem4.hwm_reset,
            "target_ratio": TARGET_MEMORY_RATIO,
            "meets_target": served_in_order(four["submitted"], four["completed"]) and ratio <= TARGET_MEMORY_RATIO,
        },
        "starts": args.starts,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "nice": os.nice(0),
        "python": sys.version.split()[0],
        "model": args.model or "bundled",
    }
    from dittomusic.utils import machine_info

    report["machine"] = machine_info()
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
