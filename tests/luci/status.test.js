'use strict';
/*
 * The status view with what the real daemon reports: dae is started with a
 * throw-away config (no interception, only its status socket), its
 * `dae status --json` is read and given to the view, numbered so that every
 * figure can be found in what the view shows. Then the buttons, the log,
 * the not-running case, and every command the view runs must be one the
 * ACL grants (and every command the ACL grants must be one the view runs).
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
	fs.writeFileSync(config, dae.toUci([ { type: 'dae', name: 'config', options: { status_socket: socket } } ]));
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
	for (const k of [ 'version', 'pid', 'uptime_seconds', 'interfaces', 'tproxy_port', 'fail_closed', 'datapath', 'dns', 'cache' ])
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

test('start, stop, restart and reload run the init script', async () => {
	const { env, out } = await renderStatus(dae.fixture(), { running: true, status: numbered(await liveStatus()) });
	const buttons = findNodes(out, n => n.tag == 'button');
	assert.strictEqual(buttons.length, 4);
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
	assert.deepStrictEqual(r.env.record.execs.find(e => e.args[0] == 'status').args, [ 'status', '--json', '-s', '/tmp/other.sock' ]);
	allExecs.push(...r.env.record.execs);
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
