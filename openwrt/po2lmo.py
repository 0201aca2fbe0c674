#!/usr/bin/env python3
"""Compiles a gettext catalog (.po) into LuCI's binary catalog (.lmo).

    openwrt/po2lmo.py luci-app-dae/po/zh_Hans/dae.po dae.zh-cn.lmo

LuCI's build does this with its po2lmo tool; this is our own converter for
building the LuCI packages without the SDK (openwrt/build-ipk.sh), written
from the format's description:

- The file starts with the translated strings, each padded with zero bytes
  to a multiple of 4.
- Then the index, one 16-byte entry per string, sorted by key: four
  big-endian 32-bit numbers (key hash, number of plural forms, offset of
  the string from the start of the file, its length).
- The last 4 bytes are the big-endian offset of the index.

The key hash is Paul Hsieh's SuperFastHash (seeded with the key's length)
of the key as LuCI looks it up: the msgid with runs of white space made one
space and the ends trimmed; with a context, "context\\x01msgid"; for the
plural forms of a msgid, "msgid\\x02N" for form N. The Plural-Forms
expression of the header is stored under key 0. Untranslated strings (and
strings whose translation hashes like the key) are left out: LuCI shows the
msgid then. A .po it cannot read is refused with the line at fault, and no
.lmo is written.
"""

import os
import struct
import sys
import tempfile

MASK = 0xFFFFFFFF


def sfh_hash(data: bytes) -> int:
    """SuperFastHash of data, seeded with its length (0 for no data)."""
    if not data:
        return 0
    h = len(data)

    def get16(i):
        return data[i] | (data[i + 1] << 8)

    def signed(b):
        return b - 256 if b >= 128 else b

    whole = len(data) & ~3
    for i in range(0, whole, 4):
        h = (h + get16(i)) & MASK
        tmp = ((get16(i + 2) << 11) ^ h) & MASK
        h = ((h << 16) ^ tmp) & MASK
        h = (h + (h >> 11)) & MASK
    rest = len(data) - whole
    if rest == 3:
        h = (h + get16(whole)) & MASK
        h ^= (h << 16) & MASK
        h ^= (signed(data[whole + 2]) << 18) & MASK
        h = (h + (h >> 11)) & MASK
    elif rest == 2:
        h = (h + get16(whole)) & MASK
        h ^= (h << 11) & MASK
        h = (h + (h >> 17)) & MASK
    elif rest == 1:
        h = (h + signed(data[whole])) & MASK
        h ^= (h << 10) & MASK
        h = (h + (h >> 1)) & MASK
    h ^= (h << 3) & MASK
    h = (h + (h >> 5)) & MASK
    h ^= (h << 4) & MASK
    h = (h + (h >> 17)) & MASK
    h ^= (h << 25) & MASK
    h = (h + (h >> 6)) & MASK
    return h


def canonical(text: str) -> str:
    """White space as LuCI's lookup sees it: runs made one space, ends trimmed."""
    return " ".join(text.split())


class PoError(Exception):
    pass


ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def unquote(text: str, where: str) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise PoError(f"{where}: not a quoted string: {text}")
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1] not in ESCAPES:
                raise PoError(f"{where}: unknown escape in {text}")
            out.append(ESCAPES[body[i + 1]])
            i += 2
            continue
        if c == '"':
            raise PoError(f"{where}: unescaped quote in {text}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_po(text: str, name: str):
    """The messages of a .po: dicts with ctxt, id, plural and str (a list)."""
    messages, cur, field = [], None, None

    def finish():
        if cur is not None:
            if cur["id"] is None:
                raise PoError(f"{name}: msgstr without msgid")
            messages.append(cur)

    for n, line in enumerate(text.split("\n"), 1):
        where = f"{name}:{n}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        if keyword == "msgctxt":
            finish()
            cur = {"ctxt": unquote(rest, where), "id": None, "plural": None, "str": {}}
            field = ("ctxt",)
        elif keyword == "msgid":
            if cur is None or cur["id"] is not None:
                finish()
                cur = {"ctxt": None, "id": None, "plural": None, "str": {}}
            cur["id"] = unquote(rest, where)
            field = ("id",)
        elif keyword == "msgid_plural" and cur is not None:
            cur["plural"] = unquote(rest, where)
            field = ("plural",)
        elif keyword == "msgstr" and cur is not None:
            cur["str"][0] = unquote(rest, where)
            field = ("str", 0)
        elif keyword.startswith("msgstr[") and keyword.endswith("]") and cur is not None:
            try:
                form = int(keyword[7:-1])
            except ValueError:
                raise PoError(f"{where}: bad plural form {keyword}") from None
            if not 0 <= form < 10:
                raise PoError(f"{where}: plural form {form} (0 to 9 are taken)")
            cur["str"][form] = unquote(rest, where)
            field = ("str", form)
        elif stripped.startswith('"') and field is not None:
            more = unquote(stripped, where)
            if field[0] == "str":
                cur["str"][field[1]] += more
            else:
                cur[field[0]] += more
        else:
            raise PoError(f"{where}: cannot read: {line}")
    finish()
    return messages


def entries(messages):
    """(key hash, forms, translation) for every translated string, and the
    header's Plural-Forms under key 0."""
    out = []
    for m in messages:
        if m["id"] == "" and m["ctxt"] is None:
            for header in m["str"].get(0, "").split("\n"):
                if header.lower().startswith("plural-forms:"):
                    out.append((0, 0, header.split(":", 1)[1].strip()))
            continue
        if not m["str"]:
            continue
        forms = max(m["str"]) + 1
        for form, value in sorted(m["str"].items()):
            if value == "":
                continue
            key = canonical(m["id"])
            if m["ctxt"] is not None:
                key = canonical(m["ctxt"]) + "\x01" + key
            if m["plural"] is not None:
                key += f"\x02{form}"
            key_hash = sfh_hash(key.encode())
            if key_hash == sfh_hash(value.encode()):
                continue
            out.append((key_hash, forms, value))
    return out


def lmo_bytes(items) -> bytes:
    strings, index, offset = [], [], 0
    for key_hash, forms, value in items:
        data = value.encode()
        pad = (4 - len(data) % 4) % 4
        strings.append(data + b"\0" * pad)
        index.append((key_hash, forms, offset, len(data)))
        offset += len(data) + pad
    seen = {}
    for key_hash, _, _, _ in index:
        if key_hash in seen:
            raise PoError(f"two strings have the same key hash {key_hash:#010x}")
        seen[key_hash] = True
    index.sort(key=lambda e: e[0])
    return (
        b"".join(strings)
        + b"".join(struct.pack(">IIII", *e) for e in index)
        + struct.pack(">I", offset)
    )


def main(argv):
    if len(argv) != 3:
        print("usage: po2lmo.py INPUT.po OUTPUT.lmo", file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    try:
        with open(src, encoding="utf-8") as f:
            items = entries(parse_po(f.read(), src))
        data = lmo_bytes(items)
    except (OSError, UnicodeDecodeError, PoError) as e:
        print(f"po2lmo: {e}", file=sys.stderr)
        return 1
    if len(items) == 0:
        print(f"po2lmo: {src} has no translated strings", file=sys.stderr)
        return 1
    # Written next to the output and renamed: never a half-written catalog.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), suffix=".lmo")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except OSError as e:
        os.unlink(tmp)
        print(f"po2lmo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
