'use strict';
/*
 * The real dae binary, as the tests use it: its UCI schema
 * (`dae schema --json`), `dae validate` on a config written from a list of
 * sections, and a fixture config that validates clean.
 */

const { execFile, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

function daeBin() {
	const bin = process.env.DAE_BIN;
	if (!bin || !fs.existsSync(bin))
		throw new Error('DAE_BIN must name the dae binary (tests/luci/run.sh sets it)');
	return bin;
}

function schema() {
	return JSON.parse(execFileSync(daeBin(), [ 'schema', '--json' ], { encoding: 'utf8' }));
}

/* A valid config that names at least one section of every type. */
function fixture() {
	return [
		{ type: 'dae', name: 'config', options: { enabled: '1', lan_interface: [ 'br-lan' ] } },
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

module.exports = { daeBin, schema, fixture, toUci, quote, validate, pool, cleanup };
