"""The whole test suite on a fresh clone, quiet and beside a CPU-bound process: does it degrade gracefully?

    .venv/bin/python benchmarks/suite_under_load.py run [--clone DIR] [--out results/suite_under_load.json]
    .venv/bin/python benchmarks/suite_under_load.py record QUIET_LOG LOADED_LOG --busy "what ran beside" [--out ...]

`run` clones this repository's HEAD into a temporary folder (or --clone), runs `./run.sh setup` once, then `./run.sh test`
twice: alone, and beside one `while True: pass` process. It records pytest's own duration (its summary line), the wall
time, and the 1-minute load average sampled every 10 s during each run.

`record` writes the same file from the logs of two `./run.sh test` runs made by hand (pytest's summary line is read
from each log), for a measurement where the busy process was something else, e.g. a sweep worker.
The goal (issue "the first hour"): the loaded run takes less than 1.5x the quiet one.
"""
import argparse, datetime, json, os, platform, re, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r'^=*\s*(.*\b(?:passed|failed)\b.*) in ([\d.]+)s', re.M)

def pytest_summary(text:str) -> dict:
    "passed/skipped/failed counts and pytest's seconds, from the last summary line of a log."
    m = list(SUMMARY.finditer(text))
    if not m: raise SystemExit("no pytest summary line ('N passed ... in S s') in the log")
    counts = {k: int(n) for n, k in re.findall(r'(\d+) (passed|skipped|failed|errors?)\b', m[-1][1])}
    return {k: counts.get(k, 0) for k in ('passed', 'skipped', 'failed')} | {'pytest_seconds': float(m[-1][2])}

def run_suite(clone:Path, busy:bool) -> dict:
    "One `./run.sh test` in `clone`, optionally beside a busy process; its summary, wall time and load samples."
    load, stop = [], threading.Event()
    def sample():
        while not stop.wait(10): load.append(os.getloadavg()[0])
    hog = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if busy else None
    t = threading.Thread(target=sample, daemon=True); t.start()
    t0 = time.time()
    try: r = subprocess.run(['./run.sh', 'test'], cwd=clone, capture_output=True, text=True)
    finally:
        stop.set()
        if hog: hog.kill(); hog.wait()
    out = {'wall_seconds': round(time.time() - t0, 1), 'returncode': r.returncode, **pytest_summary(r.stdout + r.stderr),
           'load_1min_mean': round(sum(load)/len(load), 2) if load else None}
    return out

def write(out:Path, res:dict):
    q, l = res['quiet']['pytest_seconds'], res['loaded']['pytest_seconds']
    res['ratio'] = round(l/q, 2)
    res['goal'] = 'loaded < 1.5 x quiet'; res['met'] = l < 1.5*q
    res['machine'] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    res['date'] = datetime.datetime.now().isoformat(timespec='seconds')
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.tmp'); tmp.write_text(json.dumps(res, indent=1)); tmp.replace(out)
    print(json.dumps(res, indent=1))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=('run', 'record')); p.add_argument('logs', nargs='*')
    p.add_argument('--clone'); p.add_argument('--busy', default="one 'while True: pass' process")
    p.add_argument('--commit'); p.add_argument('--out', default=str(ROOT/'results'/'suite_under_load.json'))
    a = p.parse_args()
    if a.cmd == 'record':
        if len(a.logs) != 2: p.error('record needs QUIET_LOG LOADED_LOG')
        q, l = (pytest_summary(Path(f).read_text()) for f in a.logs)
        write(Path(a.out), {'how': 'two ./run.sh test runs on a fresh clone, logs recorded', 'commit': a.commit,
                            'busy': a.busy, 'quiet': q, 'loaded': l})
        return
    clone = Path(a.clone) if a.clone else Path(tempfile.mkdtemp(prefix='sfda_suite_'))/'clone'
    if not clone.exists(): subprocess.run(['git', 'clone', '-q', str(ROOT), str(clone)], check=True)
    subprocess.run(['./run.sh', 'setup'], cwd=clone, check=True)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=clone, capture_output=True, text=True).stdout.strip()
    res = {'how': 'benchmarks/suite_under_load.py run', 'commit': commit, 'busy': a.busy,
           'quiet': run_suite(clone, busy=False), 'loaded': run_suite(clone, busy=True)}
    write(Path(a.out), res)

if __name__ == '__main__': main()
