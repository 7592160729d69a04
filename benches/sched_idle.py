#!/usr/bin/env python3
"""Where a machine's idle time goes, from a scheduler trace.

    perf sched record -a -o sched.data -- sleep 2     # while a backlog drains
    benches/sched_idle.py sched.data

Prints, over the trace:
  - how long one core, and both, sat idle;
  - what the other core ran while one idled (the serial stage, if any);
  - for each busy thread, its state while a core idled: runnable but
    waiting on the other core's queue (R), woken and not yet running (W),
    in I/O (D), asleep (S), running (run); shares of the idle time;
  - how long a task woken onto an idle core waited to run.
Thread names are folded (Erlang's "1_scheduler" and "2_scheduler" count as
"scheduler") so that the figures read by party.
"""
import collections
import re
import subprocess
import sys

SWITCH = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) "
    r"prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)"
)
WAKING = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_waking: comm=(.*?) pid=(\d+) prio=\d+ target_cpu=(\d+)"
)
BUSY_THREADS = re.compile(r"^(procinst|lapin|tokio|postgres|scheduler|dirty|poller)")


def fold(name):
    return re.sub(r"^\d+_", "", name)


def events(path):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "cpu,time,event,trace"],
        capture_output=True, text=True, check=True,
    ).stdout
    for line in out.splitlines():
        if m := SWITCH.search(line):
            yield "switch", m
        elif m := WAKING.search(line):
            yield "waking", m


def main(path):
    running = {}                      # cpu -> pid
    name = {0: "idle"}
    state = {}                        # pid -> R, W, D, S, run
    woken = {}                        # pid -> (time, target core was idle)
    other = collections.Counter()     # party on the busy core while one idles
    states = collections.defaultdict(collections.Counter)
    wake_waits = []
    first = last = None
    one_idle = both_idle = 0.0
    for kind, m in events(path):
        t = float(m.group(2))
        first = t if first is None else first
        if last is not None and len(running) == 2:
            dt, idle = t - last, [c for c, p in running.items() if p == 0]
            if len(idle) == 2:
                both_idle += dt
            elif len(idle) == 1:
                one_idle += dt
                busy = next(p for p in running.values() if p != 0)
                other[fold(name.get(busy, "?"))] += dt
                on_core = set(running.values())
                for pid, s in state.items():
                    if pid in on_core:
                        states[fold(name.get(pid, "?"))]["run"] += dt
                    elif s != "run":  # a switch-out the trace lost
                        states[fold(name.get(pid, "?"))][s] += dt
        last = t
        if kind == "waking":
            pid, target = int(m.group(4)), int(m.group(5))
            name[pid] = m.group(3)
            state[pid] = "W"
            woken[pid] = (t, running.get(target) == 0)
            continue
        cpu, prev, nxt = int(m.group(1)), int(m.group(4)), int(m.group(7))
        name[prev], name[nxt] = m.group(3), m.group(6)
        if prev != 0:
            s = m.group(5)
            state[prev] = "R" if s.startswith("R") else "D" if "D" in s else "S"
        if nxt != 0:
            state[nxt] = "run"
            at, onto_idle = woken.pop(nxt, (None, False))
            if at is not None and onto_idle:
                wake_waits.append(t - at)
        running[cpu] = nxt
    span = (last or 0) - (first or 0)
    print(f"trace {span:.2f} s: one core idle {one_idle:.3f} s ({100 * one_idle / span:.1f} %), "
          f"both idle {both_idle:.3f} s")
    print("while one core idled, the other ran:")
    for party, dt in other.most_common(8):
        print(f"  {party:24} {100 * dt / one_idle:5.1f} %")
    print("states of busy threads while one core idled (share of that time; R = runnable, waiting):")
    for party, c in sorted(states.items(), key=lambda kv: -kv[1]["run"]):
        if BUSY_THREADS.match(party):
            print(f"  {party:24} " + " ".join(f"{s}={100 * c[s] / one_idle:5.1f}%" for s in ("R", "W", "D", "run")))
    if wake_waits:
        w = sorted(wake_waits)
        print(f"woken onto an idle core: {len(w)} times, waited p50 {w[len(w) // 2] * 1e6:.0f} µs, "
              f"p90 {w[int(len(w) * 0.9)] * 1e6:.0f} µs, {sum(w) * 1000:.0f} ms in all")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
