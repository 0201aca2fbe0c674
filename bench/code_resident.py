"""Prints how much of each code section of a running program is resident:
one line "SECTION KIB_RESIDENT KIB_SIZE" per executable section of a page
or more (.text, .text.optional). Reads the section table of the program's file
(`readelf -SW`), its mappings (/proc/PID/maps) and which of their pages
are present (/proc/PID/pagemap, root only). Standard library only.

Usage: code_resident.py PID
"""
import os
import re
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
pid = sys.argv[1]
exe = os.readlink(f"/proc/{pid}/exe")

# Executable sections: name, file offset, size.
sections = []
for line in subprocess.run(["readelf", "-SW", exe], capture_output=True, text=True, check=True).stdout.splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*X\S*)", line)
    if m and int(m.group(3), 16) >= PAGE:  # not .init, .plt and the like
        sections.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))

# The program's own file mappings: start address, file offset, length.
maps = []
with open(f"/proc/{pid}/maps") as f:
    for line in f:
        parts = line.split()
        if len(parts) >= 6 and parts[5] == exe:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            maps.append((lo, int(parts[2], 16), hi - lo))

with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
    def present(addr):
        pagemap.seek(addr // PAGE * 8)
        return struct.unpack("<Q", pagemap.read(8))[0] >> 63

    for name, off, size in sections:
        pages = resident = 0
        for page_off in range(off - off % PAGE, off + size, PAGE):
            for lo, moff, length in maps:
                if moff <= page_off < moff + length:
                    pages += 1
                    resident += present(lo + page_off - moff)
                    break
        print(f"{name} {resident * PAGE // 1024} {size // 1024}")
