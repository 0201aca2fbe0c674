/*
 * ESLint for luci-app-dae. LuCI class files are function bodies: luci.js
 * wraps each in `function(window, document, L, <required modules>) {...}`,
 * so they may `return` at top level and see exactly the names their
 * `'require x as y'` directives give, besides LuCI's globals (E, _, N_).
 * Those names are declared per file from the file's own directives; the
 * local rule `luci/directives` checks the directives themselves.
 *
 * Run from the repository root: eslint -c tests/luci/eslint.config.mjs
 */

import js from '@eslint/js';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import luci from './lib/eslint-plugin-luci.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const htdocs = path.join(root, 'luci-app-dae/htdocs');
const resources = path.join(htdocs, 'luci-static/resources');
const { parseDirectives } = createRequire(import.meta.url)('./lib/luci-env.js');

function jsFiles(dir) {
	return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => {
		const p = path.join(dir, e.name);
		return e.isDirectory() ? jsFiles(p) : (e.name.endsWith('.js') ? [ p ] : []);
	});
}

const LUCI_GLOBALS = {
	window: 'readonly',
	document: 'readonly',
	L: 'readonly',
	E: 'readonly',
	_: 'readonly',
	N_: 'readonly'
};

const NODE_GLOBALS = {
	require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly',
	__dirname: 'readonly', __filename: 'readonly', global: 'readonly', Buffer: 'readonly',
	setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly'
};

/* One entry per class file: the module names its directives bring in. */
const perFile = jsFiles(htdocs).map(file => ({
	files: [ path.relative(root, file) ],
	languageOptions: {
		globals: Object.fromEntries(parseDirectives(fs.readFileSync(file, 'utf8')).requires.map(r => [ r.as, 'readonly' ]))
	}
}));

export default [
	{
		basePath: root
	},
	{
		...js.configs.recommended,
		files: [ 'luci-app-dae/htdocs/**/*.js' ]
	},
	{
		files: [ 'luci-app-dae/htdocs/**/*.js' ],
		plugins: { luci },
		languageOptions: {
			ecmaVersion: 2017,
			sourceType: 'script',
			parserOptions: { ecmaFeatures: { globalReturn: true } },
			globals: LUCI_GLOBALS
		},
		rules: {
			'luci/directives': [ 'error', { resources } ],
			'no-unused-vars': [ 'error', { args: 'none', caughtErrors: 'none' } ],
			'no-restricted-syntax': [ 'error',
				{ selector: 'TemplateLiteral', message: 'LuCI\'s JS minifier mangles template literals; use string concatenation or String.format().' } ],
			'no-restricted-globals': [ 'error', 'console', 'alert', 'localStorage' ],
			'no-var': 'off',
			'strict': 'off'
		}
	},
	...perFile,
	{
		...js.configs.recommended,
		files: [ 'tests/luci/**/*.js' ]
	},
	{
		files: [ 'tests/luci/**/*.js' ],
		languageOptions: {
			ecmaVersion: 2022,
			sourceType: 'commonjs',
			globals: NODE_GLOBALS
		},
		rules: {
			'no-unused-vars': [ 'error', { args: 'none', caughtErrors: 'none' } ]
		}
	},
	{
		files: [ 'tests/luci/**/*.mjs' ],
		languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: NODE_GLOBALS }
	},
	{
		ignores: [ 'tests/luci/node_modules/**' ]
	}
];
