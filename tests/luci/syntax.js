'use strict';
/*
 * `node --check` on every JavaScript file of luci-app-dae and of these tests.
 * A LuCI class file is the body of the function luci.js wraps it in, so it
 * is checked inside that same wrapper (on its first line: the line numbers
 * of errors stay the file's own).
 */

const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseDirectives } = require('./lib/luci-env');

const ROOT = path.resolve(__dirname, '../..');

function files(dir, test) {
	return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => {
		const p = path.join(dir, e.name);
		if (e.isDirectory())
			return e.name == 'node_modules' ? [] : files(p, test);
		return test(e.name) ? [ p ] : [];
	}).sort();
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dae-syntax-'));
let failed = 0, checked = 0;

function check(file, source) {
	const target = source == null ? file : path.join(tmp, String(checked) + '-' + path.basename(file));
	if (source != null)
		fs.writeFileSync(target, source);
	const res = spawnSync(process.execPath, [ '--check', target ], { encoding: 'utf8' });
	checked++;
	if (res.status != 0) {
		failed++;
		process.stderr.write(path.relative(ROOT, file) + ': does not parse\n' +
			res.stderr.split(target).join(path.relative(ROOT, file)) + '\n');
	}
}

for (const file of files(path.join(ROOT, 'luci-app-dae/htdocs'), n => n.endsWith('.js'))) {
	const source = fs.readFileSync(file, 'utf8');
	const names = [ 'window', 'document', 'L' ].concat(parseDirectives(source).requires.map(r => r.as));
	check(file, '(function(' + names.join(', ') + ') {' + source + '\n});\n');
}
for (const file of files(__dirname, n => /\.(m?js)$/.test(n)))
	check(file, null);

fs.rmSync(tmp, { recursive: true, force: true });
console.log('syntax: ' + (checked - failed) + ' of ' + checked + ' files parse');
process.exit(failed ? 1 : 0);
