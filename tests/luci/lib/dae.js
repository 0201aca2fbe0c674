'use strict';
/*
 * The real dae binary, as the tests use it: its UCI schema
 * (`dae schema --json`), `dae validate` on a config written from a list of
 * sections, `dae geodata --json` as the router runs it, and a fixture config
 * that validates clean, whose geodata_dir holds dat files written here.
 */

const { execFile, execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const dat = require('./dat');

function daeBin() {
	const bin = process.env.DAE_BIN;
	if (!bin || !fs.existsSync(bin))
		throw new Error('DAE_BIN must name the dae binary (tests/luci/run.sh sets it)');
	return bin;
}

function schema() {
	return JSON.parse(execFileSync(daeBin(), [ 'schema', '--json' ], { encoding: 'utf8' }));
}

let geodataDir = null;

/*
 * The rule sets of the fixture (made once per process, removed at exit):
 * geosite.dat (cn, category-ads-all, google with attributes), geoip.dat
 * (cn, private), extra.dat (a geosite file for ext:), broken.dat (not a
 * dat file) and a file that is not *.dat.
 */
function geodata() {
	if (geodataDir)
		return geodataDir;
	geodataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dae-luci-geodata-'));
	process.on('exit', () => fs.rmSync(geodataDir, { recursive: true, force: true }));
	const write = (name, data) => fs.writeFileSync(path.join(geodataDir, name), data);
	write('geosite.dat', dat.geosite([
		[ 'CN', [ [ 'suffix', 'example.cn' ], [ 'full', 'www.example.com.cn', [ 'ads' ] ] ] ],
		[ 'category-ads-all', [ [ 'keyword', 'ads' ], [ 'regex', '^ad[0-9]+\\.' ] ] ],
		[ 'google', [ [ 'suffix', 'google.example', [ 'cn', 'ads' ] ], [ 'full', 'g.example' ] ] ]
	]));
	write('geoip.dat', dat.geoip([
		[ 'CN', [ '198.51.100.0/24' ] ],
		[ 'private', [ '10.0.0.0/8', '192.168.0.0/16' ] ]
	]));
	write('extra.dat', dat.geosite([ [ 'work', [ [ 'suffix', 'corp.example' ] ] ] ]));
	write('broken.dat', Buffer.from([ 0xff, 0xff, 0xff ]));
	write('readme.txt', 'not a rule set');
	return geodataDir;
}

/* A valid config that names at least one section of every type. */
function fixture() {
	return [
		{ type: 'dae', name: 'config', options: { enabled: '1', lan_interface: [ 'br-lan' ], geodata_dir: geodata() } },
		{ type: 'dns', name: 'dns', options: { dns_listen: [ '127.0.0.1:5353' ], request_fallback: 'dns_a' } },
		{ type: 'upstream', name: 'dns_a', options: { address: 'udp://192.0.2.53:53' } },
		{ type: 'upstream', name: 'dns_b', options: { address: 'tcp://192.0.2.54' } },
		{ type: 'node', name: 'n1', options: { link: 'socks5://192.0.2.80:1080' } },
		{ type: 'node', name: 'n2', options: { link: 'socks5://192.0.2.81:1080' } },
		{ type: 'subscription', name: 's1', options: { url: 'https://sub.example/list?token=1' } },
		{ type: 'group', name: 'g', options: { node: [ 'n1', 'n2' ], subscription: [ 's1' ] } },
		{ type: 'routing', name: 'routing', options: { fallback: 'direct' } }
	];
}

/* A value as UCI text, quoted the way the router's libuci writes it (a
 * single quote becomes '\''); null when this file format cannot hold it. */
function quote(v) {
	if (/[\n\r]/.test(v))
		return null;
	return '\'' + v.replace(/'/g, '\'\\\'\'') + '\'';
}

function toUci(sections) {
	let out = '';
	for (const s of sections) {
		out += 'config ' + s.type + (s.name ? ' \'' + s.name + '\'' : '') + '\n';
		for (const [ k, v ] of Object.entries(s.options || {})) {
			for (const one of (Array.isArray(v) ? v : [ v ])) {
				const q = quote(one);
				if (q == null)
					throw new Error('cannot write ' + JSON.stringify(one) + ' in UCI');
				out += '\t' + (Array.isArray(v) ? 'list' : 'option') + ' ' + k + ' ' + q + '\n';
			}
		}
		out += '\n';
	}
	return out;
}

let tmpdir = null;
let counter = 0;

/* Runs `dae validate` on the sections; resolves to { code, errors: [lines] }. */
function validate(sections) {
	if (!tmpdir)
		tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'dae-luci-'));
	const file = path.join(tmpdir, 'c' + (++counter));
	fs.writeFileSync(file, toUci(sections));
	return new Promise(resolve => {
		execFile(daeBin(), [ 'validate', '-c', file ], { encoding: 'utf8' }, (err, stdout, stderr) => {
			fs.unlinkSync(file);
			resolve({
				code: err ? (err.code || 1) : 0,
				errors: stderr.split('\n').filter(l => l.startsWith('dae: config error: '))
					.map(l => l.slice('dae: config error: '.length))
			});
		});
	});
}

/* `dae geodata --json` on a router whose /etc/config/dae holds `sections`
 * (the real binary, reading the config for geodata_dir): { code, stdout, stderr }. */
function listGeodata(sections) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dae-luci-conf-'));
	try {
		const file = path.join(dir, 'dae');
		fs.writeFileSync(file, toUci(sections));
		const r = spawnSync(daeBin(), [ 'geodata', '--json', '-c', file ], { encoding: 'utf8' });
		return { code: r.status, stdout: r.stdout, stderr: r.stderr };
	}
	finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
}

/* fs.exec handlers for the settings views: the commands they run, answered
 * by the real binary as on a router configured with `sections`. */
function handlers(sections) {
	return {
		exec(cmd, args) {
			if (cmd == '/usr/bin/dae' && args.join(' ') == 'geodata --json')
				return listGeodata(sections);
			throw new Error('unexpected command ' + cmd + ' ' + args.join(' '));
		}
	};
}

/* Runs `fn` over `items` with at most `n` at once. */
async function pool(items, n, fn) {
	const out = new Array(items.length);
	let next = 0;
	async function worker() {
		while (next < items.length) {
			const i = next++;
			out[i] = await fn(items[i], i);
		}
	}
	await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
	return out;
}

function cleanup() {
	if (tmpdir)
		fs.rmSync(tmpdir, { recursive: true, force: true });
	tmpdir = null;
}

module.exports = { daeBin, schema, fixture, geodata, listGeodata, handlers, toUci, quote, validate, pool, cleanup };
