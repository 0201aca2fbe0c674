'use strict';
/*
 * The package files around the views: menu.d and acl.d are valid JSON, the
 * menu's paths are the view files and its ACL name is the ACL's; the ACL
 * grants read of the dae config, the status and log commands and
 * `service list`, write of the dae config and the init script's actions,
 * and nothing else; the Makefile is a LuCI application's.
 */

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');

const APP = path.resolve(__dirname, '../../luci-app-dae');
const VIEW_DIR = path.join(APP, 'htdocs/luci-static/resources/view');
const MENU_FILE = path.join(APP, 'root/usr/share/luci/menu.d/luci-app-dae.json');
const ACL_FILE = path.join(APP, 'root/usr/share/rpcd/acl.d/luci-app-dae.json');

function json(file) {
	try {
		return JSON.parse(fs.readFileSync(file, 'utf8'));
	}
	catch (e) {
		assert.fail(path.relative(APP, file) + ' is not valid JSON: ' + e.message);
	}
}

test('menu.d: every entry leads to a view file, every view has an entry', () => {
	const menu = json(MENU_FILE);
	const acl = json(ACL_FILE);
	const root = menu['admin/services/dae'];
	assert.ok(root, 'no admin/services/dae entry');
	assert.strictEqual(root.action.type, 'firstchild');
	assert.deepStrictEqual(root.depends.uci, { dae: true });
	assert.ok(Array.isArray(root.depends.acl) && root.depends.acl.length, 'the menu depends on no ACL');
	for (const name of root.depends.acl)
		assert.ok(acl[name], 'the menu depends on ACL ' + name + ', which acl.d does not define');

	const paths = [];
	const orders = [];
	for (const [ key, entry ] of Object.entries(menu)) {
		assert.match(key, /^admin\/services\/dae(\/[a-z]+)?$/, key);
		assert.ok(typeof entry.title == 'string' && entry.title.length, key + ' has no title');
		if (key == 'admin/services/dae')
			continue;
		assert.strictEqual(entry.action.type, 'view', key);
		assert.ok(fs.existsSync(path.join(VIEW_DIR, entry.action.path + '.js')), key + ': no view ' + entry.action.path + '.js');
		assert.strictEqual(key, 'admin/services/' + entry.action.path, key + ' should be where its view is');
		paths.push(entry.action.path);
		orders.push(entry.order);
	}
	const views = fs.readdirSync(path.join(VIEW_DIR, 'dae')).filter(f => f.endsWith('.js')).map(f => 'dae/' + f.slice(0, -3));
	assert.deepStrictEqual([ ...paths ].sort(), views.sort(), 'menu entries and view files differ');
	assert.strictEqual(new Set(orders).size, orders.length, 'two entries with the same order');
	assert.strictEqual(menu['admin/services/dae/status'].order, Math.min(...orders), 'the status page comes first');
});

test('acl.d: read the dae config, status, rule sets and log; write the dae config and the init actions; nothing else', () => {
	const acl = json(ACL_FILE);
	assert.deepStrictEqual(Object.keys(acl), [ 'luci-app-dae' ]);
	const grant = acl['luci-app-dae'];
	assert.deepStrictEqual(Object.keys(grant).sort(), [ 'description', 'read', 'write' ]);
	assert.ok(grant.description.length);

	const { read, write } = grant;
	assert.deepStrictEqual(Object.keys(read).sort(), [ 'file', 'ubus', 'uci' ]);
	assert.deepStrictEqual(read.uci, [ 'dae' ]);
	assert.deepStrictEqual(read.ubus, { file: [ 'exec' ], service: [ 'list' ] });
	// Exact commands: rpcd matches the joined command line, so a glob would
	// let a read-only user add arguments.
	const readCommands = /^(\/usr\/bin\/dae (--version|status --json|geodata --json)|\/sbin\/logread -e dae)$/;
	for (const [ cmd, perms ] of Object.entries(read.file)) {
		assert.match(cmd, readCommands, 'read grants ' + cmd);
		assert.deepStrictEqual(perms, [ 'exec' ], cmd);
	}

	assert.deepStrictEqual(Object.keys(write).sort(), [ 'file', 'uci' ]);
	assert.deepStrictEqual(write.uci, [ 'dae' ]);
	assert.deepStrictEqual(Object.keys(write.file).sort(),
		[ 'reload', 'restart', 'start', 'stop' ].map(a => '/etc/init.d/dae ' + a));
	for (const perms of Object.values(write.file))
		assert.deepStrictEqual(perms, [ 'exec' ]);
});

test('Makefile: a LuCI application depending on luci-base and dae', () => {
	const mk = fs.readFileSync(path.join(APP, 'Makefile'), 'utf8');
	// luci.mk of the LuCI feed, two folders up there or through src-link.
	assert.match(mk, /^include \$\(firstword \$\(wildcard \.\.\/\.\.\/luci\.mk\) \$\(TOPDIR\)\/feeds\/luci\/luci\.mk\)$/m);
	assert.match(mk, /^LUCI_TITLE:=.+$/m);
	assert.match(mk, /^LUCI_DEPENDS:=.*\+luci-base\b.*\+dae\b/m);
	assert.ok(fs.existsSync(path.join(APP, 'po/templates/dae.pot')));
	assert.ok(fs.existsSync(path.join(APP, 'po/zh_Hans/dae.po')));
});
