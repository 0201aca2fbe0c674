#!/usr/bin/env python3
"""Screenshots of luci-app-dae's pages, rendered by LuCI itself.

A developer tool (not run by CI: it needs a LuCI checkout, which CI cannot
fetch). As root on Debian 12, at the top of this repository:

    apt-get install -y chromium pngquant optipng unbound dante-server microsocks bind9-dnsutils
    git clone https://github.com/openwrt/luci /tmp/luci
    git -C /tmp/luci checkout 470bb2b8540e5b4949c66b04e5f583c5c36a5a7b
    cargo build && ebpf/build.sh
    luci-app-dae/screenshots/render.py --luci /tmp/luci

What it does:

1. Builds the namespace lab of tests/lab.sh (client, router with br-lan,
   upstream), and starts in the upstream namespace the peers the config of
   the pictures (dae.config beside this file) names: unbound (DNS), dante
   and microsocks (the two SOCKS5 nodes) and an HTTP server for the TCP
   health check. Then dae itself on the router, with that config (the TC
   program on br-lan, exactly as on OpenWrt), and a few dig queries from the
   client so that the counters have something to count.
2. Serves, on 127.0.0.1 only, what a router's uhttpd and rpcd would: the
   static files of the LuCI checkout (luci-base's JavaScript runtime and
   luci-theme-bootstrap) with this app's htdocs over them, the page frame
   the bootstrap theme's templates make, the menu from this app's menu.d,
   and the ubus JSON-RPC calls the pages make, answered from the real
   things: `uci get` from dae.config (and a network config naming the
   lab's interfaces), `service list` from the dae process, `file exec` of
   `dae status --json` and `dae --version` by running the real binary,
   `logread -e dae` from dae's own log, `luci-rpc getNetworkDevices` from
   the router namespace's devices. A call the pages are not expected to make
   is refused (and printed), as rpcd would refuse what the ACL does not grant.
3. Takes each page with `chromium --headless --screenshot`, squeezes the PNG
   (pngquant, optipng when installed) and removes everything it started.

`--serve` instead keeps the server up and prints its URL, to look at the
pages in a browser on this machine. `--lang zh_Hans` serves the
translations as LuCI's translations URL does (luci-base's base.po of the
checkout and this app's po/zh_Hans/dae.po, keyed by the hash `_()` looks
strings up by) and names the pictures PAGE.zh_Hans.png; Chinese needs a
font with its glyphs (apt-get install fonts-wqy-microhei). Nothing of LuCI is copied here: the
checkout is read where it is.

Neighbours: tests/lab.sh (the namespaces), dae.config (the settings shown),
../htdocs (the pages), ../root/usr/share/luci/menu.d (the menu).
"""

import argparse
import http.server
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.dirname(HERE)
REPO = os.path.dirname(APP)

# The pages, as the menu names them.
PAGES = ['status', 'general', 'dns', 'nodes', 'groups', 'routing']
WIDTH = 1100

UPSTREAM_ADDR = '203.0.113.53'

# The router's network config, as OpenWrt would have it for the lab's
# router namespace (tests/lab.sh): br-lan over lan0, wan0 to the upstream.
NETWORK_CONFIG = """
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config device
	option name 'br-lan'
	option type 'bridge'
	list ports 'lan0'

config interface 'lan'
	option device 'br-lan'
	option proto 'static'
	option ipaddr '192.0.2.1'
	option netmask '255.255.255.0'

config interface 'wan'
	option device 'wan0'
	option proto 'static'
	option ipaddr '198.51.100.1'
	option netmask '255.255.255.0'
"""


def log(msg):
    print('render.py: ' + msg, file=sys.stderr, flush=True)


# --- UCI files -------------------------------------------------------------


def parse_uci(text):
    """A UCI file as `uci get` gives it over ubus: {name: {'.type', '.name',
    '.anonymous', '.index', option: value or [values]}}."""
    sections = {}
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        kind = words[0]
        if kind == 'config' and len(words) in (2, 3):
            anonymous = len(words) == 2
            name = 'cfg%02x%04x' % (len(sections), number) if anonymous else words[2]
            current = {'.anonymous': anonymous, '.type': words[1], '.name': name,
                       '.index': len(sections)}
            sections[name] = current
        elif kind in ('option', 'list') and len(words) == 3 and current is not None:
            if kind == 'list':
                current.setdefault(words[1], []).append(words[2])
            else:
                current[words[1]] = words[2]
        else:
            raise ValueError('line %d: cannot read %r' % (number, line))
    return sections


# --- translations ----------------------------------------------------------


def parse_po(path):
    """The translated entries of a .po file: (context, msgid, plural msgid,
    {index: msgstr}); fuzzy and empty ones left out. Also the header's
    plural expression (`plural=...;`), or None."""
    entries, entry, field, index = [], {}, None, None

    def finish():
        if entry.get('msgid') and not entry.get('fuzzy') and any(entry.get('msgstr', {}).values()):
            entries.append((entry.get('msgctxt'), entry['msgid'], entry.get('msgid_plural'), entry['msgstr']))

    plural = None
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line.startswith('#,') and 'fuzzy' in line:
                finish()
                entry, field = {'fuzzy': True}, None
                continue
            if not line or line.startswith('#'):
                continue
            m = re.match(r'(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(".*")$', line)
            if m:
                if m.group(1) in ('msgctxt', 'msgid') and 'msgstr' in entry:
                    finish()
                    entry = {}
                field, index = m.group(1), int(m.group(2) or 0)
                text = json.loads(m.group(3))
            elif line.startswith('"'):
                text = json.loads(line)
            else:
                continue
            if field == 'msgstr':
                entry.setdefault('msgstr', {})
                entry['msgstr'][index] = entry['msgstr'].get(index, '') + text
            elif field:
                entry[field] = entry.get(field, '') + text
        finish()
    with open(path, encoding='utf-8') as f:
        m = re.search(r'plural=([^;"\\]+);', f.read(4096))
        if m:
            plural = 'plural=%s;' % m.group(1)
    return entries, plural


def string_hash(text):
    """The key LuCI's `_()` looks a string up by: Paul Hsieh's SuperFastHash
    of its UTF-8 bytes, as eight hex digits (cbi.js `sfh`)."""
    data = text.encode('utf-8')
    if not data:
        return None
    mask = 0xFFFFFFFF
    h = len(data)

    def u16(off):
        return data[off] | (data[off + 1] << 8)

    def s8(off):
        return (data[off] - 256) & mask if data[off] > 0x7F else data[off]

    off = 0
    for _ in range(len(data) >> 2):
        h = (h + u16(off)) & mask
        tmp = ((u16(off + 2) << 11) ^ h) & mask
        h = ((h << 16) ^ tmp) & mask
        h = (h + (h >> 11)) & mask
        off += 4
    rest = len(data) & 3
    if rest == 3:
        h = (h + u16(off)) & mask
        h ^= (h << 16) & mask
        h ^= (s8(off + 2) << 18) & mask
        h = (h + (h >> 11)) & mask
    elif rest == 2:
        h = (h + u16(off)) & mask
        h ^= (h << 11) & mask
        h = (h + (h >> 17)) & mask
    elif rest == 1:
        h = (h + s8(off)) & mask
        h ^= (h << 10) & mask
        h = (h + (h >> 1)) & mask
    h ^= (h << 3) & mask
    h = (h + (h >> 5)) & mask
    h ^= (h << 4) & mask
    h = (h + (h >> 17)) & mask
    h ^= (h << 25) & mask
    h = (h + (h >> 6)) & mask
    return '%08x' % h


def trim_ws(text):
    """As `_()` trims a string before it hashes it."""
    return re.sub(r'[ \t\n]+', ' ', text.strip())


def translations(po_files):
    """`window.TR` of the given catalogs: what LuCI's translations URL
    serves, keyed as `_()` and `N_()` look strings up."""
    table = {}
    for path in po_files:
        entries, plural = parse_po(path)
        if plural:
            table['00000000'] = plural
        for ctx, msgid, msgid_plural, strs in entries:
            key = (trim_ws(ctx) + '\u0001' if ctx else '') + trim_ws(msgid)
            if msgid_plural is None:
                table[string_hash(key)] = strs[0]
            else:
                for i, text in strs.items():
                    table[string_hash(key + '\u0002' + str(i))] = text
    return 'window.TR=%s;' % json.dumps(table, ensure_ascii=False)


# --- the scene: lab, peers, dae --------------------------------------------


class Scene:
    """The lab with dae running on its router, and everything to undo."""

    def __init__(self, dae_bin, bpf_object, config_text):
        self.prefix = 'shots%d' % os.getpid()
        self.work = tempfile.mkdtemp(prefix='dae-shots.')
        self.dae_bin = dae_bin
        self.bpf_object = bpf_object
        self.config_text = config_text
        self.socket = os.path.join(self.work, 'dae.sock')
        self.dae_log = os.path.join(self.work, 'dae.log')
        self.procs = []
        self.dae = None
        self.lab_up = False

    def ns(self, which):
        return '%s-%s' % (self.prefix, which)

    def start(self, ns, argv, log_name):
        with open(os.path.join(self.work, log_name), 'ab') as out:
            proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns(ns)] + argv,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def write(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def wait_for(self, what, test, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if test():
                return
            time.sleep(0.1)
        raise RuntimeError('timed out waiting for ' + what)

    def wait_tcp(self, ns, port):
        self.wait_for('%s:%d in %s' % (UPSTREAM_ADDR, port, ns), lambda: subprocess.run(
            ['ip', 'netns', 'exec', self.ns(ns), 'bash', '-c',
             'exec 3<>/dev/tcp/%s/%d' % (UPSTREAM_ADDR, port)],
            stderr=subprocess.DEVNULL).returncode == 0)

    def up(self):
        subprocess.run([os.path.join(REPO, 'tests/lab.sh'), 'up', self.prefix], check=True)
        self.lab_up = True
        self.start_peers()
        self.start_dae()
        self.ask()

    def start_peers(self):
        unbound = self.write('unbound.conf', '\n'.join([
            'server:',
            '  interface: %s' % UPSTREAM_ADDR,
            '  port: 53', '  do-daemonize: no', '  use-syslog: no',
            '  logfile: "%s/unbound.log"' % self.work, '  verbosity: 1',
            '  chroot: ""', '  username: ""', '  directory: "%s"' % self.work, '  pidfile: ""',
            '  access-control: 0.0.0.0/0 allow', '  access-control: ::/0 allow',
            '  module-config: "iterator"',
            '  local-zone: "." static',
            '  local-zone: "lab.example." static',
            '  local-data: "lab.example. 3600 IN SOA ns.lab.example. admin.lab.example. 1 3600 600 86400 60"',
            '  local-data: "www.lab.example. 300 IN A 192.0.2.80"',
            '  local-data: "www.lab.example. 300 IN AAAA 2001:db8::80"',
            '  local-data: "nas.tcp.lab.example. 300 IN A 192.0.2.81"',
            '  local-data: "mail.lab.example. 300 IN A 192.0.2.82"',
            '']))
        self.start('up', ['unbound', '-d', '-c', unbound], 'unbound.out')
        dante = self.write('danted.conf', '\n'.join([
            'logoutput: %s/danted.log' % self.work,
            'internal: %s port = 1080' % UPSTREAM_ADDR,
            'external: %s' % UPSTREAM_ADDR,
            'clientmethod: none', 'socksmethod: none',
            'user.privileged: root', 'user.unprivileged: nobody',
            'client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }',
            'socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect udpassociate udpreply }',
            '']))
        self.start('up', ['danted', '-f', dante, '-p', os.path.join(self.work, 'danted.pid'), '-N', '1'],
                   'danted.out')
        self.start('up', ['microsocks', '-i', UPSTREAM_ADDR, '-p', '1081'], 'microsocks.out')
        www = os.path.join(self.work, 'www')
        os.mkdir(www)
        with open(os.path.join(www, 'generate_204'), 'w') as f:
            f.write('')
        self.start('up', [sys.executable, '-m', 'http.server', '--bind', UPSTREAM_ADDR,
                          '--directory', www, '80'], 'http.out')
        for port in (53, 80, 1080, 1081):
            self.wait_tcp('up', port)

    def start_dae(self):
        # The file the pages show, plus what only this machine needs: where
        # the TC program and the status socket are (on a router, the
        # defaults /lib/bpf/dae_tc.o and /var/run/dae.sock).
        extra = "\n\toption bpf_object '%s'\n\toption status_socket '%s'" % (self.bpf_object, self.socket)
        text, found = re.subn(r"^config dae\b.*$", lambda m: m.group(0) + extra, self.config_text,
                              count=1, flags=re.M)
        if not found:
            raise RuntimeError("the config has no 'config dae' section")
        run_config = self.write('dae', text)
        self.dae = self.start('router', [self.dae_bin, 'run', '-c', run_config], 'dae.log')
        self.wait_for('dae to start', lambda: os.path.exists(self.socket) or self.dae.poll() is not None)
        if self.dae.poll() is not None:
            raise RuntimeError('dae did not start:\n' + open(self.dae_log).read())

    def ask(self):
        """A few queries from the client, through the TC program on br-lan
        (to an address where no server is: only dae can answer there)."""
        queries = [
            ('203.0.113.99', 'www.lab.example', 'A'),
            ('203.0.113.99', 'www.lab.example', 'A'),
            ('203.0.113.99', 'www.lab.example', 'AAAA'),
            ('203.0.113.53', 'mail.lab.example', 'A'),
            ('203.0.113.99', 'nas.tcp.lab.example', 'A'),
            ('203.0.113.99', 'ads.lab.example', 'A'),
            ('203.0.113.99', 'www.lab.example', 'A'),
        ]
        for server, name, qtype in queries:
            subprocess.run(['ip', 'netns', 'exec', self.ns('client'), 'dig', '+tries=1', '+time=3', '+short',
                            '@' + server, name, qtype], stdout=subprocess.DEVNULL, check=False)

    def status(self):
        res = subprocess.run([self.dae_bin, 'status', '--json', '-s', self.socket],
                             capture_output=True, text=True)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def wait_checked(self, seconds=30):
        """Until every node's IPv4 paths have been checked once."""
        def checked():
            st = self.status() or {}
            nodes = [n for g in st.get('groups', []) for n in g.get('nodes', [])]
            return nodes and all(n[p]['checked'] for n in nodes for p in ('tcp4', 'udp4'))
        self.wait_for('the health checks', checked, seconds)

    def router_devices(self):
        """The router namespace's devices as `luci-rpc getNetworkDevices`
        gives them."""
        res = subprocess.run(['ip', '-n', self.ns('router'), '-j', '-d', 'addr', 'show'],
                             capture_output=True, text=True, check=True)
        devices = {}
        for link in json.loads(res.stdout):
            name = link['ifname']
            info = link.get('linkinfo', {})
            kind = info.get('info_kind')
            dev = {
                'name': name, 'ifindex': link['ifindex'], 'mtu': link.get('mtu'),
                'mac': link.get('address'), 'type': 772 if name == 'lo' else 1,
                'up': link.get('operstate') in ('UP', 'UNKNOWN'),
                'devtype': 'bridge' if kind == 'bridge' else 'ethernet',
                'flags': {'up': 'UP' in link.get('flags', []), 'broadcast': 'BROADCAST' in link.get('flags', []),
                          'multicast': 'MULTICAST' in link.get('flags', [])},
                'stats': {}, 'ipaddrs': [], 'ip6addrs': [],
            }
            for a in link.get('addr_info', []):
                key = 'ipaddrs' if a['family'] == 'inet' else 'ip6addrs'
                dev[key].append({'address': a['local'], 'netmask': str(a['prefixlen'])})
            if kind == 'bridge':
                dev['bridge'] = True
                dev['ports'] = []
            devices[name] = dev
        for link in json.loads(res.stdout):
            master = link.get('master')
            if master in devices and devices[master].get('bridge'):
                devices[master]['ports'].append(link['ifname'])
        return devices

    def logread(self):
        """dae's log lines as `logread -e dae` shows them (its stderr lines,
        `TIME LEVEL message`, in syslog's layout)."""
        lines = []
        pid = self.dae.pid if self.dae else 0
        with open(self.dae_log, errors='replace') as f:
            for line in f:
                m = re.match(r'(\S+)\s+(ERROR|WARN|INFO|DEBUG|TRACE)\s+(.*)', line.rstrip('\n'))
                if not m:
                    continue
                level = {'ERROR': 'err', 'WARN': 'warn', 'INFO': 'info'}.get(m.group(2), 'debug')
                stamp = time.strftime('%a %b %e %H:%M:%S %Y', time.gmtime(parse_stamp(m.group(1))))
                lines.append('%s daemon.%s dae[%d]: %s' % (stamp, level, pid, m.group(3)))
        return '\n'.join(lines) + '\n'

    def down(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.lab_up:
            subprocess.run([os.path.join(REPO, 'tests/lab.sh'), 'down', self.prefix], check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def parse_stamp(text):
    """An RFC 3339 UTC time (`2026-12-03T13:53:01.123Z` or without
    fraction) as seconds since the epoch; now if it is something else."""
    m = re.match(r'(\d+-\d+-\d+T\d+:\d+:\d+)', text)
    if not m:
        return time.time()
    return time.mktime(time.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S')) - time.timezone


# --- what uhttpd and rpcd would answer -------------------------------------


UBUS_OK, UBUS_NOT_FOUND, UBUS_PERMISSION_DENIED = 0, 4, 6


class Router:
    """The answers of the router's web server and ubus, for one scene."""

    def __init__(self, luci, scene, config_text, lang):
        self.roots = [
            ('/luci-static/resources/', os.path.join(APP, 'htdocs/luci-static/resources')),
            ('/luci-static/resources/', os.path.join(luci, 'modules/luci-base/htdocs/luci-static/resources')),
            ('/luci-static/', os.path.join(luci, 'themes/luci-theme-bootstrap/htdocs/luci-static')),
        ]
        self.scene = scene
        self.configs = {'dae': parse_uci(config_text), 'network': parse_uci(NETWORK_CONFIG)}
        self.session = secrets.token_hex(16)
        self.luci_commit = git_head(luci)
        self.lang = lang
        self.tr = 'window.TR={};'
        if lang != 'en':
            self.tr = translations([os.path.join(luci, 'modules/luci-base/po', lang, 'base.po'),
                                    os.path.join(APP, 'po', lang, 'dae.po')])
        with open(os.path.join(APP, 'root/usr/share/luci/menu.d/luci-app-dae.json')) as f:
            self.menu_d = json.load(f)

    # static files
    def static(self, path):
        for prefix, root in self.roots:
            if path.startswith(prefix):
                rel = os.path.normpath(path[len(prefix):])
                if rel.startswith('..'):
                    return None
                full = os.path.join(root, rel)
                if os.path.isfile(full):
                    return full
        return None

    # the menu: admin > services > dae > pages, from this app's menu.d
    def menu(self):
        root = {'satisfied': True, 'children': {}}
        for path, node in self.menu_d.items():
            parts = path.split('/')
            cursor = root
            for i, part in enumerate(parts):
                cursor = cursor['children'].setdefault(part, {'satisfied': True, 'children': {}})
                if i == 0:
                    cursor.setdefault('title', 'Administration')
                if i == 1 and part == 'services':
                    cursor.setdefault('title', 'Services')
                    cursor.setdefault('order', 40)
            cursor.update({k: v for k, v in node.items() if k != 'depends'})
        return root

    def page(self, parts):
        """The HTML frame of a view, laid out as luci-theme-bootstrap's
        header and footer templates lay it out."""
        node = self.menu()
        for part in parts:
            node = node['children'].get(part)
            if node is None:
                return None
        action = node.get('action', {})
        if action.get('type') != 'view':
            return None
        env = {
            'media': '/luci-static/bootstrap', 'resource': '/luci-static/resources',
            'scriptname': '/cgi-bin/luci', 'pathinfo': '/' + '/'.join(parts),
            'documentroot': '/www', 'requestpath': parts, 'dispatchpath': parts,
            'pollinterval': 5, 'ubuspath': '/ubus/', 'sessionid': self.session,
            'token': secrets.token_hex(16),
            'nodespec': {'title': node.get('title'), 'action': action, 'satisfied': True},
            'apply_rollback': 90, 'apply_holdoff': 4, 'apply_timeout': 5, 'apply_display': 1.5,
            'rollback_token': None,
        }
        title = html_escape(node.get('title', ''))
        env_js = json.dumps(env).replace('/', '\\/')
        return f"""<!DOCTYPE html>
<html lang="{self.lang}" data-darkmode="false">
<head>
<meta charset="utf-8">
<title>OpenWrt - {title} - LuCI</title>
<meta name="viewport" content="initial-scale=1.0">
<link rel="stylesheet" href="/luci-static/bootstrap/cascade.css">
<script src="/cgi-bin/luci/admin/translations/{self.lang}"></script>
<script src="/luci-static/resources/cbi.js"></script>
</head>
<body class="lang_{self.lang} {title}" data-page="{html_escape('-'.join(parts))}">
<header>
<a class="brand" href="/">OpenWrt</a>
<ul class="nav" id="topmenu" style="display:none"></ul>
<div id="indicators" class="pull-right"></div>
</header>
<div id="maincontent" class="container">
<div id="tabmenu" style="display:none"></div>
<div id="view">
<div class="spinning">Loading view…</div>
<script src="/luci-static/resources/promis.min.js"></script>
<script src="/luci-static/resources/luci.js"></script>
<script>
L = new LuCI({env_js});
L.require('ui').then(function(ui) {{ ui.instantiateView({json.dumps(action['path'])}); }});
</script>
</div>
</div>
<footer>
<span>Powered by LuCI ({html_escape(self.luci_commit)}) / rendered by luci-app-dae/screenshots/render.py</span>
<ul class="breadcrumb pull-right" id="modemenu" style="display:none"></ul>
</footer>
<script>L.require('menu-bootstrap')</script>
<script>/* render.py's own: the page's height, for the screenshot's size */
setInterval(function() {{ document.documentElement.setAttribute('data-height', document.documentElement.scrollHeight); }}, 250);
</script>
</body>
</html>
"""

    # ubus
    def ubus(self, msg):
        if isinstance(msg, list):
            return [self.ubus(m) for m in msg]
        reply = {'jsonrpc': '2.0', 'id': msg.get('id')}
        if msg.get('method') == 'list':
            reply['result'] = {}
            return reply
        if msg.get('method') != 'call':
            reply['error'] = {'code': -32601, 'message': 'Method not found'}
            return reply
        _sid, obj, method, args = msg['params']
        result = self.call(obj, method, args or {})
        reply['result'] = result
        return reply

    def call(self, obj, method, args):
        key = (obj, method)
        if key == ('session', 'access'):
            return [UBUS_OK, {'access': True}]
        if key == ('luci', 'getFeatures'):
            return [UBUS_OK, {}]
        if key == ('file', 'list'):
            return [UBUS_OK, {'entries': []}]
        if key == ('uci', 'get'):
            values = self.configs.get(args.get('config'))
            if values is None:
                return [UBUS_NOT_FOUND]
            if args.get('section'):
                section = values.get(args['section'])
                if section is None:
                    return [UBUS_NOT_FOUND]
                if args.get('option'):
                    if args['option'] not in section:
                        return [UBUS_NOT_FOUND]
                    return [UBUS_OK, {'value': section[args['option']]}]
                return [UBUS_OK, {'values': section}]
            return [UBUS_OK, {'values': values}]
        if key == ('uci', 'changes'):
            return [UBUS_OK, {'changes': {}}]
        if key == ('service', 'list'):
            running = self.scene.dae is not None and self.scene.dae.poll() is None
            if args.get('name') not in (None, 'dae') or not running:
                return [UBUS_OK, {}]
            return [UBUS_OK, {'dae': {'instances': {'dae': {'running': True, 'pid': self.scene.dae.pid}}}}]
        if key == ('file', 'exec'):
            return self.exec(args.get('command'), args.get('params') or [])
        if key == ('luci-rpc', 'getNetworkDevices'):
            return [UBUS_OK, self.scene.router_devices()]
        if key == ('network.interface', 'dump'):
            return [UBUS_OK, {'interface': []}]
        if key in (('luci-rpc', 'getBoardJSON'), ('luci-rpc', 'getWirelessDevices'),
                   ('luci-rpc', 'getHostHints')):
            return [UBUS_OK, {}]
        if key == ('network', 'get_proto_handlers'):
            return [UBUS_OK, {}]
        log('refused ubus call %s %s %s' % (obj, method, json.dumps(args)))
        return [UBUS_PERMISSION_DENIED]

    def exec(self, command, params):
        """The commands the ACL lets the pages run, run for real."""
        if command == '/usr/bin/dae' and params[:1] == ['--version']:
            argv = [self.scene.dae_bin] + params
        elif command == '/usr/bin/dae' and params[:2] == ['status', '--json'] and '-s' not in params:
            argv = [self.scene.dae_bin] + params + ['-s', self.scene.socket]
        elif command == '/sbin/logread' and params == ['-e', 'dae']:
            return [UBUS_OK, {'code': 0, 'stdout': self.scene.logread(), 'stderr': ''}]
        else:
            log('refused exec %s %s' % (command, params))
            return [UBUS_PERMISSION_DENIED]
        res = subprocess.run(argv, capture_output=True, text=True)
        return [UBUS_OK, {'code': res.returncode, 'stdout': res.stdout, 'stderr': res.stderr}]


def html_escape(s):
    return (str(s).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace('"', '&quot;'))


def git_head(path):
    res = subprocess.run(['git', '-C', path, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True)
    return ('git-' + res.stdout.strip()) if res.returncode == 0 else 'checkout'


CONTENT_TYPES = {'.js': 'application/javascript', '.css': 'text/css', '.png': 'image/png',
                 '.svg': 'image/svg+xml', '.gif': 'image/gif', '.json': 'application/json'}


def handler_for(router):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def send(self, code, body, ctype):
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(code)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(data)))
            self.send_header('Cache-Control', 'no-cache')
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path in ('/', '/cgi-bin/luci', '/cgi-bin/luci/'):
                self.send_response(302)
                self.send_header('Location', '/cgi-bin/luci/admin/services/dae/status')
                self.end_headers()
                return
            if path == '/cgi-bin/luci/admin/menu':
                return self.send(200, json.dumps(router.menu()), 'application/json')
            if path.startswith('/cgi-bin/luci/admin/translations/'):
                return self.send(200, router.tr, 'application/javascript; charset=UTF-8')
            if path.startswith('/cgi-bin/luci/'):
                page = router.page(path[len('/cgi-bin/luci/'):].strip('/').split('/'))
                if page is None:
                    return self.send(404, 'not found', 'text/plain')
                return self.send(200, page, 'text/html; charset=UTF-8')
            full = router.static(path)
            if full is None:
                if path != '/favicon.ico':
                    log('404 ' + path)
                return self.send(404, 'not found', 'text/plain')
            with open(full, 'rb') as f:
                self.send(200, f.read(), CONTENT_TYPES.get(os.path.splitext(full)[1], 'application/octet-stream'))

        def do_POST(self):
            path = urllib.parse.urlsplit(self.path).path
            if not path.startswith('/ubus'):
                return self.send(404, 'not found', 'text/plain')
            body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            try:
                msg = json.loads(body)
            except ValueError:
                return self.send(400, 'bad json', 'text/plain')
            self.send(200, json.dumps(router.ubus(msg)), 'application/json')

    return Handler


# --- pictures --------------------------------------------------------------


def chromium_argv(chromium, profile, height):
    return [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
            '--force-device-scale-factor=1', '--user-data-dir=' + profile,
            '--virtual-time-budget=8000', '--window-size=%d,%d' % (WIDTH, height)]


def shoot(chromium, url, out):
    """The page once to learn its height (the frame writes it into
    `data-height`), then its picture at that height."""
    profile = tempfile.mkdtemp(prefix='dae-shots-chromium.')
    try:
        dom = subprocess.run(chromium_argv(chromium, profile, 800) + ['--dump-dom', url], check=True,
                             capture_output=True, text=True, timeout=120).stdout
        m = re.search(r'data-height="(\d+)"', dom)
        if not m:
            raise RuntimeError('the page at %s did not load (no data-height)' % url)
        height = min(int(m.group(1)), 4000)
        subprocess.run(chromium_argv(chromium, profile, height) + ['--screenshot=' + out, url],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if shutil.which('pngquant'):
        subprocess.run(['pngquant', '--force', '--skip-if-larger', '--strip', '--quality=60-90',
                        '--output', out, out], check=False)
    if shutil.which('optipng'):
        subprocess.run(['optipng', '-quiet', '-o2', out], check=False)
    log('%s: %d bytes' % (out, os.path.getsize(out)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--luci', required=True, help='a checkout of github.com/openwrt/luci')
    ap.add_argument('--dae', default=os.path.join(REPO, 'target/debug/dae'), help='the dae binary')
    ap.add_argument('--bpf-object', default=os.path.join(REPO, 'ebpf/build/dae_tc.bpfel.o'),
                    help="dae's TC program (ebpf/build.sh)")
    ap.add_argument('--config', default=os.path.join(HERE, 'dae.config'), help='the UCI file the pages show')
    ap.add_argument('--out', default=HERE, help='where the PNG files go')
    ap.add_argument('--pages', default=','.join(PAGES), help='which pages (%s)' % ','.join(PAGES))
    ap.add_argument('--lang', default='en',
                    help='a language of po/ (zh_Hans): the pages in it, as PAGE.LANG.png')
    ap.add_argument('--chromium', default='chromium')
    ap.add_argument('--serve', action='store_true', help='keep serving and print the URL instead of shooting')
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit('render.py: needs root (it builds network namespaces)')
    marker = os.path.join(args.luci, 'modules/luci-base/htdocs/luci-static/resources/luci.js')
    if not os.path.isfile(marker):
        sys.exit('render.py: %s is not a LuCI checkout (no %s)' % (args.luci, marker))
    for need, hint in ((args.dae, 'cargo build'), (args.bpf_object, 'ebpf/build.sh')):
        if not os.path.isfile(need):
            sys.exit('render.py: %s is missing (%s)' % (need, hint))
    if not args.serve and not shutil.which(args.chromium):
        sys.exit('render.py: %s not found (apt-get install chromium)' % args.chromium)
    for program, package in (('unbound', 'unbound'), ('danted', 'dante-server'), ('microsocks', 'microsocks'),
                             ('dig', 'bind9-dnsutils'), ('ip', 'iproute2')):
        if not shutil.which(program):
            sys.exit('render.py: %s not found (apt-get install %s)' % (program, package))
    pages = [p for p in args.pages.split(',') if p]
    for p in pages:
        if p not in PAGES:
            sys.exit('render.py: no page %r (%s)' % (p, ','.join(PAGES)))

    if args.lang != 'en':
        for po in (os.path.join(args.luci, 'modules/luci-base/po', args.lang, 'base.po'),
                   os.path.join(APP, 'po', args.lang, 'dae.po')):
            if not os.path.isfile(po):
                sys.exit('render.py: no %s' % po)
    with open(args.config) as f:
        config_text = f.read()
    parse_uci(config_text)

    scene = Scene(os.path.abspath(args.dae), os.path.abspath(args.bpf_object), config_text)
    server = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        scene.up()
        scene.wait_checked()
        router = Router(os.path.abspath(args.luci), scene, config_text, args.lang)
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler_for(router))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = 'http://127.0.0.1:%d/cgi-bin/luci/admin/services/dae/' % server.server_address[1]
        if args.serve:
            log('serving %sstatus (Ctrl-C stops)' % base)
            while True:
                time.sleep(3600)
        os.makedirs(args.out, exist_ok=True)
        for p in pages:
            name = p if args.lang == 'en' else '%s.%s' % (p, args.lang)
            shoot(args.chromium, base + p, os.path.join(args.out, name + '.png'))
    except KeyboardInterrupt:
        pass
    finally:
        if server:
            server.shutdown()
        scene.down()


if __name__ == '__main__':
    main()
