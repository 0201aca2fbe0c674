'use strict';
/*
 * The status view with what the real daemon reports: dae is started with a
 * throw-away config (no interception, its status socket, two proxy groups),
 * its `dae status --json` is read and given to the view, numbered so that
 * every figure can be found in what the view shows. The groups keep the
 * shape the daemon gives them, with check results set for the test (a node
 * down, a path with no node alive). Then the buttons, the log, the
 * not-running case, and every command the views run (the status page, and
 * the rule editors' `dae geodata --json`) must be one the ACL grants (and
 * every command the ACL grants must be one a view runs).
 */

const test = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { createEnv, installGlobals, textOf, findNodes, markup } = require('./lib/luci-env');
const dae = require('./lib/dae');

const ROOT = path.resolve(__dirname, '../..');
const ACL = JSON.parse(fs.readFileSync(path.join(ROOT, 'luci-app-dae/root/usr/share/rpcd/acl.d/luci-app-dae.json'), 'utf8'));

/* What `dae status --json` says while dae runs. */
async function liveStatus() {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dae-status-'));
	const socket = path.join(dir, 'dae.sock');
	const config = path.join(dir, 'dae');
	fs.writeFileSync(config, dae.toUci([
		/* Nodes and check targets on closed loopback ports: every check
		 * fails at once and nothing leaves the machine. */
		{ type: 'dae', name: 'config', options: { status_socket: socket,
			tcp_check_url: 'http://127.0.0.1:9/', udp_check_dns: '127.0.0.1:9' } },
		/* A listener on a port of the kernel's choosing: a config that
		 * serves nothing does not start. */
		{ type: 'dns', name: 'dns', options: { dns_listen: [ '127.0.0.1:0' ] } },
		{ type: 'node', name: 'hk1', options: { link: 'socks5://127.0.0.1:9' } },
		{ type: 'node', name: 'web', options: { link: 'http://127.0.0.1:19' } },
		{ type: 'group', name: 'proxy', options: { node: [ 'hk1', 'web' ], policy: 'min_avg10' } },
		{ type: 'group', name: 'backup', options: { node: [ 'hk1' ], policy: 'fixed(0)' } }
	]));
	const child = spawn(dae.daeBin(), [ 'run', '-c', config ], { stdio: 'ignore' });
	try {
		for (let i = 0; i < 100 && !fs.existsSync(socket); i++)
			await new Promise(r => setTimeout(r, 50));
		return JSON.parse(execFileSync(dae.daeBin(), [ 'status', '--json', '-s', socket ], { encoding: 'utf8' }));
	}
	finally {
		child.kill('SIGTERM');
		await new Promise(r => child.exitCode != null ? r() : child.on('exit', r));
		fs.rmSync(dir, { recursive: true, force: true });
	}
}

/* The datapath counter names, from the daemon's source (null without interception). */
function datapathCounters() {
	const src = fs.readFileSync(path.join(ROOT, 'src/ebpf/shared.rs'), 'utf8');
	const names = [ ...src.matchAll(/Counter::\w+ => "(\w+)"/g) ].map(m => m[1]);
	assert.ok(names.length >= 5, 'datapath counter names not found in src/ebpf/shared.rs');
	return names;
}

/* A report with a distinct number in every figure. */
function numbered(report) {
	const st = JSON.parse(JSON.stringify(report));
	let n = 1001;
	for (const part of [ 'dns', 'cache' ])
		for (const k of Object.keys(st[part]))
			st[part][k] = n++;
	st.datapath = Object.fromEntries(datapathCounters().map(k => [ k, n++ ]));
	st.pid = 4242;
	st.uptime_seconds = 3725;
	st.interfaces = [ 'br-lan', 'br-guest' ];
	st.dns_listen = [ '127.0.0.1:5335' ];
	st.tproxy_port = 12399;
	st.fail_closed = true;
	return st;
}

const PATHS = [ 'tcp4', 'udp4', 'tcp6', 'udp6' ];

/*
 * The report with the live groups' shape and chosen check results. Group
 * proxy (min_avg10): hk1 works over IPv4 and TCP fails over IPv6, web (an
 * HTTP proxy, no UDP) is down, so no node is alive for TCP over IPv6.
 * Group backup (fixed(0)): hk1 alone.
 */
function withGroups(report) {
	const st = numbered(report);
	assert.deepStrictEqual((st.groups || []).map(g => g.name), [ 'proxy', 'backup' ], 'dae status --json lists the groups');
	for (const g of st.groups) {
		for (const k of [ 'name', 'policy', 'selected', 'nodes' ])
			assert.ok(k in g, 'a group in dae status --json has no ' + k);
		for (const path of PATHS)
			assert.ok(path in g.selected, 'a group\'s selected has no ' + path);
		for (const n of g.nodes) {
			for (const k of [ 'name', 'protocol', 'server' ].concat(PATHS))
				assert.ok(k in n, 'a node in dae status --json has no ' + k);
			for (const path of PATHS)
				for (const k of [ 'checked', 'alive', 'latency_ms', 'avg10_ms', 'moving_avg_ms', 'error' ])
					assert.ok(k in n[path], 'a node\'s ' + path + ' in dae status --json has no ' + k);
		}
	}
	const [ proxy, backup ] = st.groups;
	const [ hk1, web ] = proxy.nodes;
	assert.deepStrictEqual([ hk1.name, hk1.protocol, hk1.server ], [ 'hk1', 'socks5', '127.0.0.1:9' ]);
	assert.deepStrictEqual([ web.name, web.protocol, web.server ], [ 'web', 'http', '127.0.0.1:19' ]);
	const path = (checked, alive, ms, error) =>
		({ checked, alive, latency_ms: ms, avg10_ms: ms && ms + 3, moving_avg_ms: ms && ms + 2, error });
	Object.assign(hk1, {
		tcp4: path(true, true, 137), udp4: path(true, true, 142),
		tcp6: path(true, false, null, 'Connection refused <b>(os error 111)</b>'), udp6: path(false, true, null, null)
	});
	hk1.udp4.avg10_ms = 142;
	Object.assign(web, {
		tcp4: path(true, false, null, 'timed out'), udp4: path(false, true, null, null),
		tcp6: path(true, false, null, 'No route to host (os error 113)'), udp6: path(false, true, null, null)
	});
	proxy.selected = { tcp4: 'hk1', udp4: 'hk1', tcp6: null, udp6: 'hk1' };
	Object.assign(backup.nodes[0], JSON.parse(JSON.stringify(hk1)));
	backup.selected = { tcp4: 'hk1', udp4: 'hk1', tcp6: 'hk1', udp6: 'hk1' };
	return st;
}

/* The text of each cell of each row of a table, spaces collapsed. */
function tableText(table) {
	return findNodes(table, n => n.tag == 'tr').map(tr => tr.children.filter(c => c && (c.tag == 'td' || c.tag == 'th'))
		.map(c => textOf(c).replace(/\s+/g, ' ').trim()));
}

const LOG = Array.from({ length: 80 }, (_, i) => 'Thu Nov 27 07:00:' + String(i).padStart(2, '0') + ' 2026 daemon.info dae[4242]: line ' + (i + 1) +
	(i == 79 ? ' query <img src=x onerror=alert(1)>.example refused' : '')).join('\n') + '\n';

function handlers(opts) {
	return {
		rpc(object, method, args) {
			assert.deepStrictEqual([ object, method, args ], [ 'service', 'list', [ 'dae' ] ]);
			return opts.running ? { dae: { instances: { dae: { running: true, pid: 4242 } } } } : {};
		},
		exec(cmd, args) {
			if (cmd == '/usr/bin/dae' && args[0] == 'status')
				return opts.status ? { code: 0, stdout: JSON.stringify(opts.status) + '\n', stderr: '' }
					: { code: 1, stdout: '', stderr: 'dae status: cannot reach the daemon <b>at</b> /var/run/dae.sock' };
			if (cmd == '/usr/bin/dae' && args[0] == '--version')
				return { code: 0, stdout: 'dae 9.8.7\n', stderr: '' };
			if (cmd == '/sbin/logread')
				return { code: 0, stdout: LOG, stderr: '' };
			if (cmd == '/etc/init.d/dae')
				return (args[0] == 'reload') ? { code: 1, stdout: '', stderr: '<i>not running</i>' } : { code: 0, stdout: '', stderr: '' };
			throw new Error('unexpected command ' + cmd + ' ' + args.join(' '));
		}
	};
}

async function renderStatus(sections, opts) {
	const env = createEnv(sections, handlers(opts));
	installGlobals(env);
	const View = env.loadView('view/dae/status.js');
	const view = new View();
	const out = await view.render(await view.load());
	return { env, view, out };
}

const allExecs = [];

test('the running daemon\'s report is shown, every figure of it', async () => {
	const live = await liveStatus();
	for (const k of [ 'version', 'pid', 'uptime_seconds', 'interfaces', 'tproxy_port', 'fail_closed', 'datapath', 'dns', 'cache', 'groups' ])
		assert.ok(k in live, 'dae status --json has no ' + k);
	const st = numbered(live);
	const { env, out } = await renderStatus(dae.fixture(), { running: true, status: st });
	allExecs.push(...env.record.execs);
	const text = textOf(out);

	for (const want of [ st.version, '4242', '1h 2m 5s', 'br-lan, br-guest', '12399', '127.0.0.1:5335', 'fail closed' ])
		assert.ok(text.includes(want), 'the page does not show ' + want);
	for (const part of [ 'datapath', 'dns', 'cache' ])
		for (const [ k, v ] of Object.entries(st[part]))
			assert.ok(text.includes(String(v)), 'the page does not show ' + part + '.' + k);

	assert.ok(text.includes('line 80') && text.includes('line 31') && !text.includes('line 30 '), 'the last 50 log lines');
	assert.deepStrictEqual(markup(out), [], 'log text would be parsed as HTML');
	assert.ok(!/disabled in the General Settings/.test(text));
	assert.deepStrictEqual(env.record.polls.map(p => p.interval), [ 5 ]);
	assert.deepStrictEqual(env.record.execs.find(e => e.args[0] == 'status').args, [ 'status', '--json' ]);
});

/* The keys the daemon writes into `fn`'s JSON in `file` (its source). */
function reportKeys(file, fn) {
	const src = fs.readFileSync(path.join(ROOT, file), 'utf8');
	const body = src.slice(src.indexOf('pub fn ' + fn)).split('\n    }\n')[0];
	return new Set([ ...body.matchAll(/"(\w+)":/g) ].map(m => m[1]));
}

test('the relays: TCP connections and UDP endpoints per node, every figure of them', async () => {
	let n = 2001;
	const way = keys => Object.fromEntries(keys.map(k => [ k, n++ ]));
	const relay = Object.assign(way([ 'blocked', 'refused_no_node', 'refused_no_verdict', 'idled_out', 'open', 'refused_full', 'pooled_buffers' ]), {
		tcp: { hk1: way([ 'active', 'total', 'failed', 'bytes_up', 'bytes_down' ]) },
		udp: Object.assign(way([ 'endpoints', 'capacity', 'sniffing', 'evicted', 'expired', 'blocked', 'refused_no_node', 'sniffed', 'dropped' ]), {
			ways: { hk1: way([ 'endpoints', 'total', 'failed', 'datagrams_up', 'datagrams_down', 'bytes_up', 'bytes_down' ]) }
		})
	});
	/* The same keys as the daemon's reports. */
	const tcpKeys = reportKeys('src/relay/mod.rs', 'report'), udpKeys = reportKeys('src/relay/udp.rs', 'report');
	for (const k of Object.keys(relay.tcp.hk1).concat(Object.keys(relay).filter(k => k != 'udp' && k != 'tcp')))
		assert.ok(tcpKeys.has(k), 'the TCP relay reports no ' + k);
	for (const k of Object.keys(relay.udp.ways.hk1).concat(Object.keys(relay.udp).filter(k => k != 'ways')))
		assert.ok(udpKeys.has(k), 'the UDP relay reports no ' + k);

	const st = numbered(await liveStatus());
	st.relay = relay;
	const { out } = await renderStatus(dae.fixture(), { running: true, status: st });
	const text = textOf(out);
	const shown = [ relay.refused_no_node, relay.blocked, relay.idled_out,
		relay.tcp.hk1.active, relay.tcp.hk1.total, relay.tcp.hk1.failed,
		relay.udp.endpoints, relay.udp.capacity, relay.udp.expired, relay.udp.evicted, relay.udp.sniffed,
		relay.udp.blocked, relay.udp.refused_no_node, relay.udp.dropped,
		relay.udp.ways.hk1.endpoints, relay.udp.ways.hk1.total, relay.udp.ways.hk1.failed,
		relay.udp.ways.hk1.datagrams_up, relay.udp.ways.hk1.datagrams_down ];
	for (const v of shown)
		assert.ok(text.includes(String(v).replace(/\B(?=(\d{3})+$)/g, ',')) || text.includes(String(v)), 'the page does not show ' + v);
	assert.ok(/Relayed UDP/.test(text) && /Relayed connections/.test(text));
});

test('the proxy groups: the node in use on each path, every node\'s checks, and no node alive', async () => {
	const live = await liveStatus();
	const st = withGroups(live);
	const { env, out } = await renderStatus(dae.fixture(), { running: true, status: st });
	allExecs.push(...env.record.execs);
	const text = textOf(out).replace(/\s+/g, ' ');

	/* The policies as the config writes them, from what dae reports. */
	assert.ok(text.includes('Proxy groups'));
	assert.ok(/Group proxy \(policy min_avg10\)/.test(text), 'group proxy and its policy (' + live.groups[0].policy + ')');
	assert.ok(/Group backup \(policy fixed\(0\)\)/.test(text), 'group backup and its policy (' + live.groups[1].policy + ')');

	const tables = findNodes(out, n => n.tag == 'table').map(tableText).filter(t => t[0] && t[0][0] == 'Node');
	assert.strictEqual(tables.length, 2, 'a table per group');
	assert.deepStrictEqual(tables[0], [
		[ 'Node', 'TCP, IPv4', 'UDP, IPv4', 'TCP, IPv6', 'UDP, IPv6' ],
		[ 'In use', 'hk1', 'hk1', 'no node alive', 'hk1' ],
		[ 'hk1 socks5 127.0.0.1:9', '137 ms (average 140 ms)', '142 ms', 'DOWN Connection refused <b>(os error 111)</b>', 'not checked yet' ],
		[ 'web http 127.0.0.1:19', 'DOWN timed out', 'no UDP (HTTP proxy)', 'DOWN No route to host (os error 113)', 'no UDP (HTTP proxy)' ]
	]);
	assert.deepStrictEqual(tables[1].slice(1), [
		[ 'In use', 'hk1', 'hk1', 'hk1', 'hk1' ],
		[ 'hk1 socks5 127.0.0.1:9', '137 ms', '142 ms', 'DOWN Connection refused <b>(os error 111)</b>', 'not checked yet' ]
	], 'fixed(0) ranks by no average');

	/* "no node alive" and DOWN stand out, and the group says what it means. */
	const flagged = findNodes(out, n => n.tag == 'strong' && /color/.test(n.attrs.style || '')).map(n => textOf(n).trim());
	assert.deepStrictEqual(flagged, [ 'no node alive', 'DOWN', 'DOWN', 'DOWN', 'DOWN' ]);
	assert.ok(/No node of this group is alive for TCP, IPv6: what is routed to this group there fails/.test(text));
	assert.strictEqual(text.match(/No node of this group is alive/g).length, 1, 'only group proxy lacks a node');
	assert.deepStrictEqual(markup(out), [], 'check errors would be parsed as HTML');

	/* No groups, no section. */
	st.groups = [];
	const none = await renderStatus(dae.fixture(), { running: true, status: st });
	assert.ok(!textOf(none.out).includes('Proxy groups'));
});

test('start, stop, restart and reload run the init script', async () => {
	const { env, out } = await renderStatus(dae.fixture(), { running: true, status: numbered(await liveStatus()) });
	const buttons = findNodes(out, n => n.tag == 'button');
	assert.strictEqual(buttons.length, 4);
	/* In a cbi-page-actions box, LuCI's themes float the buttons that are
	 * not apply, save, reset or negative to the left, ahead of the others:
	 * the page showed Restart, Reload, Start, Stop (seen in the screenshots
	 * of luci-app-dae/screenshots/render.py). */
	const boxes = findNodes(out, n => (n.children || []).some(c => c && c.tag == 'button'));
	assert.strictEqual(boxes.length, 1, 'one box holds the buttons');
	assert.doesNotMatch(boxes[0].attrs.class || '', /\bcbi-page-actions\b/, 'the buttons would show out of order');
	for (const b of buttons)
		await b.attrs.click({});
	const actions = env.record.execs.filter(e => e.cmd == '/etc/init.d/dae').map(e => e.args.join(' '));
	assert.deepStrictEqual(actions, [ 'start', 'stop', 'restart', 'reload' ]);
	assert.match(env.record.notifications.at(-1).text, /"reload" failed: <i>not running<\/i>/);
	assert.deepStrictEqual(markup(env.record.notifications.map(n => n.node)), [], 'an error would be parsed as HTML');
	allExecs.push(...env.record.execs);
});

test('a stopped or disabled dae, and a status socket elsewhere', async () => {
	const sections = dae.fixture();
	sections[0] = { type: 'dae', name: 'config', options: { enabled: '0', status_socket: '/tmp/other.sock' } };
	let r = await renderStatus(sections, { running: false });
	let text = textOf(r.out);
	assert.ok(text.includes('9.8.7'), 'the version of the installed binary');
	assert.ok(/disabled in the General Settings/.test(text));
	assert.ok(!r.env.record.execs.some(e => e.args[0] == 'status'), 'asks the daemon while it is not running');
	allExecs.push(...r.env.record.execs);

	r = await renderStatus(sections, { running: true, status: null });
	text = textOf(r.out);
	assert.ok(/Cannot read the daemon's status: dae status: cannot reach the daemon/.test(text));
	assert.deepStrictEqual(markup(r.out), [], 'an error would be parsed as HTML');
	// dae status finds a socket elsewhere from /etc/config/dae itself: the
	// command stays the one the read-only ACL grants.
	assert.deepStrictEqual(r.env.record.execs.find(e => e.args[0] == 'status').args, [ 'status', '--json' ]);
	allExecs.push(...r.env.record.execs);
});

test('the rule editors ask dae for the rule sets installed, with the command the ACL grants', async () => {
	for (const file of [ 'dns.js', 'routing.js' ]) {
		const env = createEnv(dae.fixture(), dae.handlers(dae.fixture()));
		installGlobals(env);
		const View = env.loadView('view/dae/' + file);
		const view = new View();
		await view.render(await view.load());
		assert.deepStrictEqual(env.record.execs.map(e => [ e.cmd ].concat(e.args).join(' ')), [ '/usr/bin/dae geodata --json' ], file);
		allExecs.push(...env.record.execs);
	}
});

/* rpcd matches a command line against ACL entries with shell wildcards. */
function granted(level, line) {
	return Object.entries((ACL['luci-app-dae'][level] || {}).file || {}).some(([ pattern, perms ]) =>
		perms.includes('exec') && new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$').test(line));
}

test('every command the views run is granted by the ACL, and nothing more is', () => {
	assert.ok(allExecs.length > 0);
	const lines = [ ...new Set(allExecs.map(e => [ e.cmd ].concat(e.args).join(' '))) ];
	for (const line of lines) {
		const write = /^\/etc\/init\.d\/dae /.test(line);
		assert.ok(granted(write ? 'write' : 'read', line), line + ' is not granted by the ' + (write ? 'write' : 'read') + ' ACL');
	}
	for (const level of [ 'read', 'write' ])
		for (const pattern of Object.keys((ACL['luci-app-dae'][level] || {}).file || {}))
			assert.ok(lines.some(l => new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$').test(l)),
				'the ACL grants ' + pattern + ' but no view runs it');
});
