"""What the window costs: a terminal caller (`extrasafe call`) rings the desktop app on an
Xvfb screen, which answers with video: a 720p30 call both ways. The baseline, in the same
run, is the same call answered by the terminal front end (`extrasafe listen`): same library,
same codec, no window. One window at a time, so the two cores are not saturated.

Per round: the callee's CPU over a steady 10 s (percent of one core; software OpenGL, since
Xvfb has no GPU, so this is an upper bound), the X server's CPU, pictures shown per second,
resident memory, CPU while idle on the home screen, time from launch to the first drawn
frame, and from "Accept" to the caller's first picture on screen. Three rounds; medians.

Usage: bash bench/desktop.sh (builds the release binaries, then runs this).
"""

import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESKTOP = os.path.join(ROOT, "target/release/extrasafe-desktop")
CLI = os.path.join(ROOT, "target/release/extrasafe")


def cpu_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Xvfb:
    def __init__(self):
        self.p = subprocess.Popen(
            ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.display = ":" + self.p.stdout.readline().strip()

    def close(self):
        self.p.kill()
        self.p.wait()


class App:
    def __init__(self, x, data):
        env = dict(os.environ, DISPLAY=x.display)
        env.pop("WAYLAND_DISPLAY", None)
        self.started = time.monotonic()
        self.p = subprocess.Popen(
            [DESKTOP, "--automation", "--bind", "127.0.0.1", "--port", "0", "--no-dht",
             "--no-lan", "--no-sound", "--video", "test", "--data-dir", data],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)
        self.q = queue.Queue()
        self.last = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put((time.monotonic(), json.loads(line)))
            except ValueError:
                pass

    def send(self, obj):
        self.p.stdin.write(json.dumps(obj) + "\n")
        self.p.stdin.flush()

    def wait(self, pred, timeout=60):
        """Time at which the state first satisfied `pred`."""
        end = time.monotonic() + timeout
        if pred(self.last):
            return time.monotonic()
        while True:
            try:
                t, s = self.q.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"timed out; last state: {self.last}")
            self.last = s
            if pred(s):
                return t

    def latest(self):
        """The newest state reported so far."""
        try:
            while True:
                self.last = self.q.get_nowait()[1]
        except queue.Empty:
            pass
        return self.last

    def close(self):
        self.send({"action": "close_window"})
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def phase(s):
    return ((s.get("call") or {}).get("phase") or {}).get("name")


def shown(s):
    return ((s.get("call") or {}).get("stats") or {}).get("frames_shown") or 0


CLI_VIDEO = ["--video", "test", "--video-size", "1280x720", "--video-out", "/dev/null"]
CLI_ENV = dict(os.environ, PULSE_SERVER="unix:/nonexistent")


def cli_caller(ticket):
    return subprocess.Popen(
        [CLI, "--ephemeral", "--json", "call", ticket, *CLI_VIDEO], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=CLI_ENV)


def hang_up(call):
    call.stdin.write("/hangup\n")
    call.stdin.flush()
    call.wait(timeout=10)


def desktop_round(tmp):
    """A terminal caller rings the desktop app, which answers with video."""
    x = Xvfb()
    app = App(x, f"{tmp}/d")
    first = app.wait(lambda s: s.get("stage") == "firstrun") - app.started
    app.send({"action": "create_identity"})
    app.wait(lambda s: s.get("stage") == "ready")
    # Idle on its home screen: nothing moving.
    time.sleep(2)
    i0 = cpu_ns(app.p.pid)
    time.sleep(5)
    idle = (cpu_ns(app.p.pid) - i0) / 5e7
    call = cli_caller(app.last["me"]["ticket"])
    app.wait(lambda s: phase(s) == "incoming")
    accepted = time.monotonic()
    app.send({"action": "accept", "video": True})
    picture = app.wait(lambda s: s.get("remote_picture") is not None) - accepted
    time.sleep(6)
    c0, x0, n0 = cpu_ns(app.p.pid), cpu_ns(x.p.pid), shown(app.latest())
    time.sleep(10)
    c1, x1, n1 = cpu_ns(app.p.pid), cpu_ns(x.p.pid), shown(app.latest())
    rss = rss_mb(app.p.pid)
    hang_up(call)
    app.close()
    x.close()
    return {"cpu": (c1 - c0) / 1e8, "x_cpu": (x1 - x0) / 1e8, "fps": (n1 - n0) / 10,
            "rss": rss, "first_frame": first, "accept_to_picture": picture, "idle": idle}


def cli_round(tmp):
    """The same call, answered by the terminal front end (the baseline)."""
    listen = subprocess.Popen(
        [CLI, "--ephemeral", "--json", "listen", "--bind", "127.0.0.1:0", "--accept", "anyone",
         "--once", *CLI_VIDEO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=CLI_ENV)
    ticket = None
    for line in listen.stdout:
        if '"ticket"' in line:
            ticket = json.loads(line)["ticket"]
            break
    call = cli_caller(ticket)
    time.sleep(6)
    c0 = cpu_ns(listen.pid)
    time.sleep(10)
    c1 = cpu_ns(listen.pid)
    rss = rss_mb(listen.pid)
    hang_up(call)
    listen.wait(timeout=10)
    return {"cpu": (c1 - c0) / 1e8, "rss": rss}


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    desk, cli = [], []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            desk.append(desktop_round(tmp))
            cli.append(cli_round(tmp))
        d, c = desk[-1], cli[-1]
        print(f"round {r + 1}: desktop callee CPU {d['cpu']:.0f} % (X server {d['x_cpu']:.0f} %), "
              f"shown {d['fps']:.1f} fps, RSS {d['rss']:.0f} MB, first frame {d['first_frame']:.2f} s, "
              f"accept to picture {d['accept_to_picture'] * 1000:.0f} ms, idle {d['idle']:.1f} % | "
              f"terminal callee CPU {c['cpu']:.0f} %, RSS {c['rss']:.0f} MB")
    m = lambda rows, k: statistics.median([r[k] for r in rows])
    dc, cc = m(desk, "cpu"), m(cli, "cpu")
    print()
    print(f"median over {rounds} rounds (the callee of a 720p30 call both ways with a terminal caller):")
    print(f"  CPU: desktop {dc:.0f} % of a core, terminal (baseline, same run) {cc:.0f} %: "
          f"ratio {dc / cc:.2f}x, the window adds {dc - cc:.0f} points (software OpenGL)")
    print(f"  X server: {m(desk, 'x_cpu'):.0f} %")
    print(f"  pictures shown: {m(desk, 'fps'):.1f} per second")
    print(f"  RSS: desktop {m(desk, 'rss'):.0f} MB, terminal {m(cli, 'rss'):.0f} MB")
    print(f"  idle on the home screen: {m(desk, 'idle'):.1f} % of a core")
    print(f"  launch to first frame: {m(desk, 'first_frame'):.2f} s")
    print(f"  accept to the caller's first picture: {m(desk, 'accept_to_picture') * 1000:.0f} ms")


if __name__ == "__main__":
    main()
