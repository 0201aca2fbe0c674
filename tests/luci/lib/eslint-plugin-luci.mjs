/*
 * ESLint rules for LuCI class files (views and modules under
 * luci-static/resources): the file starts with 'use strict' and its
 * `'require x [as y]'` directives, each naming a module that exists and is
 * used, and it ends by returning a class (`return X.extend({...})`), which
 * is what luci.js expects of the function it wraps the file in.
 */

import fs from 'node:fs';
import path from 'node:path';

/* Modules luci-base provides (luci.js built-ins and resources/*.js). */
export const BASE_MODULES = [
	'baseclass', 'dom', 'poll', 'request', 'session', 'view',
	'form', 'fs', 'network', 'rpc', 'uci', 'ui', 'validation', 'firewall',
	'tools.widgets', 'tools.views', 'tools.prng'
];

const REQUIRE = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/;

function appModuleExists(resources, name) {
	return fs.existsSync(path.join(resources, name.replace(/\./g, '/') + '.js'));
}

const directives = {
	meta: {
		type: 'problem',
		docs: { description: 'LuCI class file prologue: use strict, then require directives of known, used modules' },
		schema: [ { type: 'object', properties: { resources: { type: 'string' } }, additionalProperties: false } ]
	},
	create(context) {
		const resources = (context.options[0] || {}).resources;
		const sourceCode = context.sourceCode;
		const seen = new Map();
		return {
			Program(node) {
				const prologue = [];
				for (const st of node.body) {
					if (st.type == 'ExpressionStatement' && st.expression.type == 'Literal' && typeof st.expression.value == 'string')
						prologue.push(st);
					else
						break;
				}
				if (!prologue.length || prologue[0].expression.value != 'use strict')
					context.report({ node, message: 'A LuCI class file starts with \'use strict\';' });
				for (const st of prologue.slice(1)) {
					const m = REQUIRE.exec(st.expression.value);
					if (!m) {
						context.report({ node: st, message: 'Only \'require MODULE [as NAME]\' directives may follow \'use strict\' (found {{s}})', data: { s: JSON.stringify(st.expression.value) } });
						continue;
					}
					const name = m[1], alias = m[2] || name.replace(/[^a-zA-Z0-9_]/g, '_');
					if (!BASE_MODULES.includes(name) && !(resources && appModuleExists(resources, name)))
						context.report({ node: st, message: 'Unknown module \'{{name}}\' (neither luci-base nor a file of this app)', data: { name } });
					if (seen.has(alias))
						context.report({ node: st, message: 'Module name \'{{alias}}\' is required twice', data: { alias } });
					seen.set(alias, st);
				}
				const last = node.body[node.body.length - 1];
				const returnsClass = last && last.type == 'ReturnStatement' && last.argument &&
					last.argument.type == 'CallExpression' && last.argument.callee.type == 'MemberExpression' &&
					!last.argument.callee.computed && last.argument.callee.property.name == 'extend';
				if (!returnsClass)
					context.report({ node: last || node, message: 'A LuCI class file ends with `return SomeClass.extend({...});`' });
			},
			'Program:exit'(node) {
				const scope = sourceCode.getScope(node);
				const used = new Set(scope.through.map(r => r.identifier.name));
				for (const v of scope.variables)
					if (v.references.length)
						used.add(v.name);
				for (const [ alias, st ] of seen)
					if (!used.has(alias))
						context.report({ node: st, message: 'Module \'{{alias}}\' is required but never used', data: { alias } });
			}
		};
	}
};

export default {
	meta: { name: 'eslint-plugin-luci-dae' },
	rules: { directives }
};
