"""Turns bench/run.sh's result lines into the report: medians per server and
workload, and ratios of dae against each peer. Standard library only.

Input lines (tab-separated):
  hits|misses  SERVER  QPS  CPU_US_PER_QUERY  LOST  AVG_LATENCY_US  LATENCY_SD_US  P50_US  P99_US  P999_US
  spoofing     SERVER  QUERIES_SEEN  DISTINCT_PORTS_PER_1000  RANDOM_CASE_PER_1000
  rss          SERVER  KB
  split        SERVER  "ANON_KB FILE_KB "
  code         dae     "SECTION RESIDENT_KB SIZE_KB"
  size         dae     BYTES
  startup      dae     MS
"""
import statistics
import sys
from collections import defaultdict

path, rounds, duration, outstanding = sys.argv[1:5]
runs = defaultdict(list)
rss, split, other, spoof = {}, {}, {}, {}
code = []
with open(path) as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if parts[0] in ("hits", "misses"):
            runs[(parts[0], parts[1])].append([float(x) for x in parts[2:]])
        elif parts[0] == "spoofing":
            spoof[parts[1]] = parts[2:]
        elif parts[0] == "rss":
            rss[parts[1]] = int(parts[2])
        elif parts[0] == "split":
            split[parts[1]] = [int(x) for x in parts[2].split()]
        elif parts[0] == "code":
            section, resident, size = parts[2].split()
            code.append(f"{section} {resident} of {size} KiB")
        else:
            other[parts[0]] = parts[2]


def med(workload, server, column):
    values = [r[column] for r in runs.get((workload, server), [])]
    return statistics.median(values) if values else float("nan")


QPS, CPU, LOST, LAT, SD, P50, P99, P999 = range(8)
print(f"dae benchmark: {rounds} round(s) of {duration} s per run, dnsperf -c 4 -q {outstanding}, "
      "servers pinned to CPU 0, dnsperf and unbound to CPU 1; medians.")
print()
for workload, servers in (("hits", ["dae", "dnsdist", "dnsmasq", "echo"]), ("misses", ["dae", "dnsdist", "dnsmasq"])):
    print(f"cache {workload}:")
    print(f"  {'server':<9}{'qps':>9}{'CPU us/query':>14}{'avg lat us':>12}{'sd us':>8}"
          f"{'p50 us':>8}{'p99 us':>8}{'p99.9 us':>10}{'lost':>7}")
    servers = [s for s in servers if (workload, s) in runs]
    for s in servers:
        print(f"  {s:<9}{med(workload, s, QPS):>9.0f}{med(workload, s, CPU):>14.2f}"
              f"{med(workload, s, LAT):>12.0f}{med(workload, s, SD):>8.0f}"
              f"{med(workload, s, P50):>8.0f}{med(workload, s, P99):>8.0f}{med(workload, s, P999):>10.0f}"
              f"{med(workload, s, LOST):>7.0f}")
    for peer in [p for p in servers if p != "dae"]:
        cpu = med(workload, "dae", CPU) / med(workload, peer, CPU)
        qps = med(workload, "dae", QPS) / med(workload, peer, QPS)
        p99 = med(workload, "dae", P99) / med(workload, peer, P99)
        print(f"  dae / {peer:<8} CPU per query {cpu:5.2f} (lower is better)   qps {qps:5.2f}   p99 {p99:5.2f}")
    if workload == "misses" and spoof:
        print("  spoofing resistance, per 1,000 misses (what reached the upstream):")
        for s in [s for s in ("dae", "dnsdist", "dnsmasq") if s in spoof]:
            seen, ports, case = spoof[s]
            print(f"    {s:<9}{ports:>5} distinct source ports, {case:>5} names in random letter case"
                  f"   ({seen} queries seen)")
    print()
print("peak RSS (VmHWM) after the runs, same 4096-entry cache:")
for s in ("dae", "dnsmasq", "dnsdist", "echo"):
    if s in rss:
        tail = ""
        if s in split and len(split[s]) == 2:
            tail = f"   (at the end: {split[s][0]} KiB anon + {split[s][1]} KiB files)"
        print(f"  {s:<9}{rss[s]:>8} KiB{tail}")
if code:
    print(f"  dae's code resident: {', '.join(code)}")
if "dae" in rss and "dnsmasq" in rss:
    print(f"  dae / dnsmasq RSS {rss['dae'] / rss['dnsmasq']:.2f}   dae / dnsdist RSS {rss['dae'] / rss['dnsdist']:.2f}")
print()
if "size" in other:
    print(f"dae binary (release, stripped, this machine's target): {int(other['size']) / 1024:.0f} KiB")
if "startup" in other:
    print(f"dae start to first answered query: {other['startup']} ms (median of 5)")
