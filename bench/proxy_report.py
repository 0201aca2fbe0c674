"""Turns bench/proxy.sh's result lines into the report: medians per row and
run, the proxies' CPU time per GB and memory per idle connection, and the
ratios the targets are about. Standard library only.

Input lines (tab-separated):
  tput  ROW STREAMS DIR BITS_PER_S BYTES PROXY_TICKS NODE_TICKS PROG_NS PROG_RUNS [LOSS_PERCENT]
  idle  ROW RSS_BEFORE_KIB RSS_WITH_KIB CONNECTIONS
With MODE udp (the fifth argument), BYTES is what the receiver got, LOSS
the share it lost, and the idle rows are live UDP endpoints.
ROW: forward (a), dae-direct (b), dae, ss-redir, v2ray (c).
"""
import statistics
import sys
from collections import defaultdict

path, rounds, duration, ticks = sys.argv[1:5]
mode = sys.argv[5] if len(sys.argv) > 5 else "tcp"
loss = defaultdict(list)
ticks = float(ticks)
tput = defaultdict(list)
idle = defaultdict(list)
with open(path) as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if parts[0] == "tput":
            row, streams, way = parts[1:4]
            bps, moved, proxy, node, prog_ns, prog_runs = (float(x) for x in parts[4:10])
            if len(parts) > 10:
                loss[(row, streams, way)].append(float(parts[10]))
            gb = moved / 1e9
            tput[(row, streams, way)].append(
                (bps, proxy / ticks / gb, node / ticks / gb, prog_ns / max(prog_runs, 1), prog_ns / 1e6 / gb, prog_runs / gb)
            )
        elif parts[0] == "idle":
            before, with_, n = (int(x) for x in parts[2:5])
            idle[parts[1]].append((before, with_, (with_ - before) / n, n))

RUNS = [("1", "up"), ("4", "up"), ("1", "down")]
ROWS = [("forward", "(a)"), ("dae-direct", "(b)"), ("dae", "(c)"), ("ss-redir", "(c)"), ("v2ray", "(c)")]
PROXIED = {"dae", "ss-redir", "v2ray"}


def med(row, streams, way, column):
    values = [r[column] for r in tput.get((row, streams, way), [])]
    return statistics.median(values) if values else float("nan")


print(f"proxy benchmark: {rounds} round(s), iperf3 {duration} s per run; the router's proxy pinned")
print("to CPU 0, iperf3 (both ends), the node and the idle server to CPU 1; medians.")
print()
print("throughput and the router-side proxy's CPU time (utime+stime) per GB moved:")
print(f"  {'row':<16}{'run':<12}{'Gbit/s':>8}{'proxy CPU s/GB':>16}{'node CPU s/GB':>15}")
for row, tag in ROWS:
    for streams, way in RUNS:
        if (row, streams, way) not in tput:
            continue
        bps = med(row, streams, way, 0) / 1e9
        cpu = f"{med(row, streams, way, 1):.2f}" if row in PROXIED else "n/a"
        node = med(row, streams, way, 2)
        lost = loss.get((row, streams, way))
        lost = f"  loss {statistics.median(lost):.2f}%" if lost else ""
        print(f"  {tag + ' ' + row:<16}{streams + ' ' + way:<12}{bps:>8.2f}{cpu:>16}{node:>15.2f}{lost}")
print("  (a) and (b): the work is the kernel's softirq time, which no process owns;")
print("  only their throughput is reported.")
print()
print("dae's TC program on br-lan (the kernel's BPF statistics, kernel.bpf_stats_enabled):")
print(f"  {'row':<16}{'run':<12}{'ns per packet':>14}{'packets per GB':>16}{'CPU ms per GB':>15}")
for row, tag in ROWS[1:3]:
    for streams, way in RUNS:
        if (row, streams, way) in tput and med(row, streams, way, 5) > 0:
            print(f"  {tag + ' ' + row:<16}{streams + ' ' + way:<12}{med(row, streams, way, 3):>14.0f}"
                  f"{med(row, streams, way, 5):>16.0f}{med(row, streams, way, 4):>15.2f}")
print("  (packets as the program sees them: veth hands over GSO packets of up to 64 KB)")
print()
print("ratios:")
for streams, way in RUNS:
    if ("dae", streams, way) not in tput:
        continue
    run = f"{streams} stream(s) {way}"
    b_a = med("dae-direct", streams, way, 0) / med("forward", streams, way, 0)
    pairs = zip(tput.get(("dae-direct", streams, way), []), tput.get(("forward", streams, way), []))
    each = " ".join(f"{b[0] / a[0]:.2f}" for b, a in pairs)
    print(f"  {run:<18} (b)/(a) throughput          {b_a:5.2f}  (target >= 0.97; round by round: {each})")
    for peer, target in (("ss-redir", "<= 1"), ("v2ray", "<= 0.5")):
        cpu = med("dae", streams, way, 1) / med(peer, streams, way, 1)
        bps = med("dae", streams, way, 0) / med(peer, streams, way, 0)
        print(f"  {run:<18} dae / {peer:<8} CPU per GB  {cpu:5.2f}  (target {target})   throughput {bps:5.2f}")
print()
what = "live UDP endpoints" if mode == "udp" else "connections"
print(f"memory with idle proxied {what} (VmRSS; a warm-up of 20 first):")
print(f"  {'proxy':<10}{'idle KiB':>10}{'with KiB':>10}{what.split()[-1]:>13}{'KiB each':>10}")
for row in ("dae", "ss-redir", "v2ray"):
    if row in idle:
        before = statistics.median(x[0] for x in idle[row])
        with_ = statistics.median(x[1] for x in idle[row])
        each = statistics.median(x[2] for x in idle[row])
        n = idle[row][0][3]
        print(f"  {row:<10}{before:>10.0f}{with_:>10.0f}{n:>13}{each:>10.2f}")
if "dae" in idle:
    each = statistics.median(x[2] for x in idle["dae"])
    if mode == "udp":
        print(f"  dae per live UDP endpoint {each:.2f} KiB (target <= 1 plus the node's own state)")
    else:
        print(f"  dae per idle proxied connection {each:.2f} KiB (target <= 8)")
    for peer in ("ss-redir", "v2ray"):
        if peer in idle:
            other = statistics.median(x[2] for x in idle[peer])
            print(f"  dae / {peer:<8} per connection {each / other:5.2f}")
