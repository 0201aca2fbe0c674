'use strict';
/*
 * The settings views against the daemon. Every view is evaluated with the
 * LuCI recorder (lib/luci-env.js); what it declares is compared with
 * `dae schema --json`: no option the schema lacks, none it has missing,
 * the same list-ness, type, allowed values, default and required-ness. Then
 * each option's browser check is run on the values of corpus.js and
 * compared with what `dae validate` says of the same value in a config.
 * Plus the behaviours around the forms: section names, references, the
 * share-link import, the normal Save & Apply.
 */

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { createEnv, installGlobals, markup, textOf, findNodes, RESOURCES } = require('./lib/luci-env');
const dae = require('./lib/dae');
const CORPUS = require('./corpus');

const SCHEMA = dae.schema();
const VIEW_DIR = path.join(RESOURCES, 'view/dae');
const VIEWS = fs.readdirSync(VIEW_DIR).filter(f => f.endsWith('.js')).sort();
const SETTINGS_VIEWS = VIEWS.filter(f => f != 'status.js');
const NON_WRITING = [ 'CBI.DummyValue', 'CBI.Button' ];
const LIST_CLASSES = [ 'CBI.DynamicList', 'CBI.MultiValue' ];

function schemaSection(type) {
	return SCHEMA.sections.find(s => s.type == type);
}

async function renderView(file, sections, handlers) {
	const env = createEnv(sections, handlers || dae.handlers(sections));
	installGlobals(env);
	const View = env.loadView('view/dae/' + file);
	const view = new View();
	const data = await view.load();
	const out = await view.render(data);
	return { env, view, out };
}

/* Every option every settings view declares, with where it is. */
async function collectOptions(sections) {
	const all = [];
	for (const file of SETTINGS_VIEWS) {
		const { env, view } = await renderView(file, sections || dae.fixture());
		for (const map of env.record.maps) {
			assert.strictEqual(map.config, 'dae', file + ': a form for another config');
			for (const s of map.children)
				for (const o of s.children)
					all.push({
						file, env, view, section: s, type: s.sectiontype, o,
						name: o.ucioption || o.option,
						cls: o.constructor.displayName,
						writes: !NON_WRITING.includes(o.constructor.displayName),
						list: LIST_CLASSES.includes(o.constructor.displayName) || !!o.multiple
					});
		}
	}
	return all;
}

function sameSet(a, b) {
	return JSON.stringify([ ...new Set(a) ].sort()) == JSON.stringify([ ...new Set(b) ].sort());
}

/* What the schema says of one declared option; [] when they agree. */
function disagreements(d, spec, fixtureNames) {
	const o = d.o, out = [], v = o.validate || {}, where = d.file + ': ' + d.type + '.' + d.name;
	if (spec.list != d.list)
		out.push(where + ': schema says list=' + spec.list + ', the view declares ' + d.cls + (o.multiple ? ' (multiple)' : ''));
	if (spec.type == 'bool') {
		if (d.cls != 'CBI.Flag')
			out.push(where + ': a bool should be a Flag, not ' + d.cls);
		if (String(o.default) != spec.default)
			out.push(where + ': default ' + o.default + ', schema ' + spec.default);
		if (o.enabled != '1' || o.disabled != '0')
			out.push(where + ': a Flag must write 1/0');
		return out;
	}
	if (spec.type == 'enum') {
		if (![ 'CBI.ListValue', 'CBI.RichListValue' ].includes(d.cls))
			out.push(where + ': an enum should be a ListValue, not ' + d.cls);
		if (!sameSet(o.keylist, spec.values))
			out.push(where + ': values ' + JSON.stringify(o.keylist) + ', schema ' + JSON.stringify(spec.values));
		if (o.default != spec.default)
			out.push(where + ': default ' + o.default + ', schema ' + spec.default);
		return out;
	}
	if (typeof o.validate != 'function' || v.daeKind != spec.type)
		out.push(where + ': checked as ' + (v.daeKind || 'nothing') + ', schema type ' + spec.type);
	const vs = v.daeSpec || {};
	if (spec.type == 'integer' && (vs.min !== spec.min || vs.max !== spec.max))
		out.push(where + ': range ' + vs.min + '..' + vs.max + ', schema ' + spec.min + '..' + spec.max);
	if (spec.refers && spec.type == 'reference' && vs.refers != spec.refers)
		out.push(where + ': refers to ' + vs.refers + ', schema ' + spec.refers);
	if (!!spec.required != !!vs.required || (spec.required && o.rmempty !== false))
		out.push(where + ': required=' + spec.required + ' in the schema, the view: ' + (vs.required ? 'required' : 'optional'));
	if (spec.default != null && o.placeholder !== spec.default && o.default !== spec.default)
		out.push(where + ': shows default ' + (o.placeholder || o.default) + ', schema ' + spec.default);
	if (spec.reserved) {
		const want = spec.reserved.concat(fixtureNames[spec.refers] || []);
		const missing = want.filter(x => !o.keylist.includes(x));
		if (missing.length)
			out.push(where + ': choices lack ' + missing.join(', '));
	}
	if (spec.type == 'group_policy') {
		const missing = spec.values.filter(x => !/\(N\)/.test(x) && !o.keylist.includes(x));
		if (missing.length)
			out.push(where + ': choices lack ' + missing.join(', '));
	}
	if (spec.type == 'reference') {
		const missing = (fixtureNames[spec.refers] || []).filter(x => !o.keylist.includes(x));
		if (missing.length)
			out.push(where + ': choices lack ' + missing.join(', '));
	}
	return out;
}

function fixtureNames() {
	const names = {};
	for (const s of dae.fixture())
		(names[s.type] = names[s.type] || []).push(s.name);
	return names;
}

test('the fixture config is valid for dae', async () => {
	const res = await dae.validate(dae.fixture());
	assert.deepStrictEqual(res.errors, []);
	assert.strictEqual(res.code, 0);
});

test('every view loads as LuCI loads it and renders a form of the dae config', async () => {
	assert.ok(VIEWS.includes('status.js'), 'a status view');
	for (const file of SETTINGS_VIEWS) {
		const { env, view } = await renderView(file, dae.fixture());
		assert.ok(env.record.maps.length > 0, file + ': no form.Map');
		for (const h of [ 'handleSave', 'handleSaveApply', 'handleReset' ])
			assert.ok(!Object.prototype.hasOwnProperty.call(Object.getPrototypeOf(view), h), file + ': overrides ' + h + ' (settings pages keep the normal Save & Apply)');
	}
});

test('the views write exactly the options of the schema, with its types, values and defaults', async () => {
	const declared = await collectOptions();
	const names = fixtureNames();
	const problems = [];

	for (const d of declared) {
		const sec = schemaSection(d.type);
		if (!sec) {
			problems.push(d.file + ': a section of type ' + d.type + ', which the schema lacks');
			continue;
		}
		if (!d.writes) {
			if (sec.options.some(o => o.name == d.name))
				problems.push(d.file + ': ' + d.type + '.' + d.name + ' is shown read-only but is a schema option');
			continue;
		}
		const spec = sec.options.find(o => o.name == d.name);
		if (!spec) {
			problems.push(d.file + ': writes ' + d.type + '.' + d.name + ', which the schema lacks');
			continue;
		}
		problems.push(...disagreements(d, spec, names));
	}

	for (const sec of SCHEMA.sections) {
		const forms = declared.filter(d => d.type == sec.type);
		if (!forms.length) {
			problems.push('no view has a section for ' + sec.type);
			continue;
		}
		for (const opt of sec.options)
			if (!forms.some(d => d.writes && d.name == opt.name))
				problems.push('no view sets ' + sec.type + '.' + opt.name);
		const s = forms[0].section;
		if (sec.named && !sec.single && (s.anonymous || !s.addremove))
			problems.push(sec.type + ': named sections need a table that adds and removes named sections');
		if (sec.named && !Object.prototype.hasOwnProperty.call(s, 'handleAdd'))
			problems.push(sec.type + ': new section names are not checked (tools.guardSections)');
		if (sec.single && (s.addremove || (s.constructor.displayName != 'CBI.NamedSection' && !s.anonymous)))
			problems.push(sec.type + ': a single section should be shown as one anonymous section');
	}

	assert.deepStrictEqual(problems, []);
});

/*
 * One value of one option, in the browser and in dae: null when both agree,
 * else what differs. `sections`: the config the option's view was rendered
 * with; the value replaces the option in the section `sid`.
 */
async function judge(d, sid, value, sections, stats) {
	const browser = d.o.validate.call(d.o, sid, value);
	const where = d.type + '.' + d.name + ' = ' + JSON.stringify(value);
	const spec = schemaSection(d.type).options.find(o => o.name == d.name);
	if (value === '') {
		/* LuCI removes an emptied option: dae then uses the default, unless required. */
		if ((browser === true) == !!spec.required)
			return where + ': browser ' + (browser === true ? 'accepts' : 'refuses') + ' an empty value, required=' + spec.required;
		return null;
	}
	if (value.includes('\'') && value.includes('"')) {
		/* dae reads a value with one kind of quote in it, not both: the browser must refuse it. */
		return (browser === true) ? where + ': browser accepts both kinds of quote, which dae cannot read' : null;
	}
	const changed = sections.map(s => s.name == sid ? Object.assign({}, s, {
		options: Object.assign({}, s.options, { [d.name]: d.list ? [ value ] : value })
	}) : s);
	const res = await dae.validate(changed);
	/* dae validate also checks that a bpf_object file exists on this machine;
	 * the browser judges the value's form only. */
	const errors = res.errors.filter(e => !e.startsWith('option bpf_object: no such file: '));
	const tag = d.type + ' \'' + sid + '\', option \'' + d.name + '\'';
	const daeErrors = errors.filter(e => e.startsWith(tag));
	const other = errors.filter(e => !e.startsWith(tag));
	stats.compared++;
	if (other.length)
		return where + ': dae reports elsewhere: ' + other.join(' | ');
	if ((browser === true) != (daeErrors.length == 0))
		return where + ': browser ' + (browser === true ? 'accepts' : 'refuses (' + browser + ')') +
			', dae ' + (daeErrors.length ? 'refuses (' + daeErrors[0] + ')' : 'accepts');
	return null;
}

test('each browser check judges values as dae validate does', async () => {
	const declared = (await collectOptions()).filter(d => d.writes && d.o.validate && d.o.validate.daeKind);
	const stats = { compared: 0 };
	const jobs = [];
	for (const d of declared) {
		const corpus = CORPUS[d.o.validate.daeKind];
		assert.ok(corpus, 'no corpus for ' + d.o.validate.daeKind);
		const sid = d.env.store.find(s => s['.type'] == d.type)['.name'];
		for (const value of corpus)
			jobs.push({ d, sid, value });
	}
	const mismatches = (await dae.pool(jobs, 6, j => judge(j.d, j.sid, j.value, dae.fixture(), stats))).filter(m => m);
	dae.cleanup();
	process.stdout.write('# ' + stats.compared + ' values compared with dae validate over ' + declared.length + ' options\n');
	assert.ok(stats.compared > 300, 'only ' + stats.compared + ' values compared');
	assert.deepStrictEqual(mismatches, []);
});

test('the corpus has values each check accepts and values it refuses, for every kind', async () => {
	const declared = (await collectOptions()).filter(d => d.writes && d.o.validate && d.o.validate.daeKind);
	const problems = [];
	for (const kind of Object.keys(CORPUS)) {
		const d = declared.find(x => x.o.validate.daeKind == kind);
		if (!d) {
			problems.push(kind + ': no option checks this kind');
			continue;
		}
		const sid = d.env.store.find(s => s['.type'] == d.type)['.name'];
		const verdicts = CORPUS[kind].filter(v => v !== '').map(v => d.o.validate.call(d.o, sid, v) === true);
		if (!verdicts.includes(true) || !verdicts.includes(false))
			problems.push(kind + ': ' + verdicts.filter(x => x).length + ' accepted of ' + verdicts.length);
	}
	assert.deepStrictEqual(problems, []);
});

/* The fixture with some options of some sections changed: { sid: { option: value } }. */
function varied(variant) {
	return dae.fixture().map(s => variant[s.name]
		? Object.assign({}, s, { options: Object.assign({}, s.options, variant[s.name]) }) : s);
}

test('an upstream host name needs a bootstrap address or a plain upstream at an IP, in both', async () => {
	const values = [ 'tls://dns.example', 'https://dns.example/q', 'udp://dns.example', 'tls://192.0.2.1', 'udp://192.0.2.53' ];
	const variants = [
		/* the other upstream is itself a name: nothing can look names up */
		{ dns_a: {}, dns_b: { address: 'https://dns2.example', bootstrap: '192.0.2.54' } },
		/* ... unless this one has its address given */
		{ dns_a: { bootstrap: '2001:db8::53' }, dns_b: { address: 'https://dns2.example', bootstrap: '192.0.2.54' } }
	];
	const stats = { compared: 0 }, mismatches = [];
	for (const variant of variants) {
		const sections = varied(variant);
		const { env } = await renderView('dns.js', sections);
		const grid = env.record.maps[0].children.find(s => s.sectiontype == 'upstream');
		const o = grid.children.find(c => c.option == 'address');
		const d = { o, type: 'upstream', name: 'address', list: false };
		for (const value of values)
			mismatches.push(await judge(d, 'dns_a', value, sections, stats));
	}
	dae.cleanup();
	assert.strictEqual(stats.compared, values.length * variants.length);
	assert.deepStrictEqual(mismatches.filter(m => m), []);
});

/* Upstreams that cannot look a proxy server's name up, and ones that can. */
const NO_LOOKUP = [
	/* no plain upstream */
	{ dns_a: { address: 'tls://192.0.2.1' }, dns_b: { address: 'https://dns2.example', bootstrap: '192.0.2.54' } },
	/* a plain upstream, but given by name (its bootstrap address does not make it one at an IP) */
	{ dns_a: { address: 'udp://dns.example', bootstrap: '192.0.2.53' }, dns_b: { address: 'quic://192.0.2.54' } }
];
const LOOKUP = [
	/* the fixture: udp:// and tcp:// at IP addresses */
	{},
	/* one plain upstream at an IP address, not the first upstream */
	{ dns_a: { address: 'tls://192.0.2.1' }, dns_b: { address: 'tcp+udp://[2001:db8::54]:5353' } }
];

test('a proxy server given by host name needs a plain upstream at an IP, in both', async () => {
	const uuid = '1386f85e-657b-4d6e-9d56-78badb75e1fd';
	const vmess = json => 'vmess://' + Buffer.from(JSON.stringify(json)).toString('base64');
	const byName = [ 'socks5://proxy.example:1080', 'trojan://secret@Proxy.Example.:443?sni=proxy.example#t',
		'ss://' + Buffer.from('aes-256-gcm:pw@proxy.example:8388').toString('base64'),
		vmess({ add: 'proxy.example', port: '443', id: uuid }) ];
	const byIp = [ 'socks5://192.0.2.80:1080', 'ss://aes-128-gcm:pw@[2001:db8::80]:8388',
		vmess({ add: '192.0.2.84', port: '443', id: uuid }) ];
	const stats = { compared: 0 }, mismatches = [], verdicts = [];
	for (const variant of NO_LOOKUP.concat(LOOKUP)) {
		const sections = varied(variant), lookup = LOOKUP.includes(variant);
		const { env } = await renderView('nodes.js', sections);
		const o = env.record.maps[0].children[0].children.find(c => c.option == 'link');
		const d = { o, type: 'node', name: 'link', list: false };
		for (const value of byName.concat(byIp)) {
			mismatches.push(await judge(d, 'n1', value, sections, stats));
			verdicts.push([ JSON.stringify(variant), value, o.validate.call(o, 'n1', value) === true,
				lookup || byIp.includes(value) ]);
		}
		if (lookup)
			continue;
		/* the browser says what dae says */
		const res = await dae.validate(sections.map(s => s.name == 'n1'
			? Object.assign({}, s, { options: { link: byName[0] } }) : s));
		assert.deepStrictEqual(res.errors.map(e => e.replace(/'/g, '"')),
			[ 'node "n1", option "link": ' + o.validate.call(o, 'n1', byName[0]) ]);
	}
	dae.cleanup();
	assert.strictEqual(stats.compared, (byName.length + byIp.length) * (NO_LOOKUP.length + LOOKUP.length));
	assert.deepStrictEqual(mismatches.filter(m => m), []);
	/* accepted where an upstream can look names up, refused elsewhere; IP addresses always */
	assert.deepStrictEqual(verdicts.filter(v => v[2] != v[3]), []);
});

test('new sections get names dae accepts, and referenced sections are not removed', async () => {
	const { env } = await renderView('dns.js', dae.fixture());
	const grid = env.record.maps[0].children.find(s => s.sectiontype == 'upstream');
	for (const bad of [ 'asis', 'reject', 'accept', 'n1', 'g', 'bad-name', '' ]) {
		const before = env.record.changes.length;
		await grid.handleAdd(null, bad);
		assert.strictEqual(env.record.changes.length, before, 'added an upstream named ' + JSON.stringify(bad));
	}
	await grid.handleAdd(null, 'dns_c');
	assert.deepStrictEqual(env.record.changes.at(-1), [ 'add', 'upstream', 'dns_c' ]);

	await grid.handleRemove('dns_a');
	assert.ok(!env.record.changes.some(c => c[0] == 'remove'), 'removed dns_a, which request_fallback uses');
	assert.match(env.record.notifications.at(-1).text, /dns\.request_fallback/);
	await grid.handleRemove('dns_b');
	assert.deepStrictEqual(env.record.changes.at(-1), [ 'remove', 'dns_b' ]);

	const groups = await renderView('groups.js', dae.fixture());
	const ggrid = groups.env.record.maps[0].children[0];
	await ggrid.handleAdd(null, 'direct');
	assert.strictEqual(groups.env.record.changes.length, 0, 'a group named direct');
	const nodes = await renderView('nodes.js', dae.fixture());
	const ngrid = nodes.env.record.maps[0].children[0];
	await ngrid.handleRemove('n1');
	assert.strictEqual(nodes.env.record.changes.length, 0, 'removed n1, which group g uses');
});

test('an empty config gets its single sections when a page opens', async () => {
	for (const [ file, type, name ] of [ [ 'general.js', 'dae', 'config' ], [ 'dns.js', 'dns', 'dns' ], [ 'routing.js', 'routing', 'routing' ] ]) {
		const { env } = await renderView(file, []);
		assert.deepStrictEqual(env.record.changes, [ [ 'add', type, name ] ], file);
	}
	const { env } = await renderView('general.js', dae.fixture());
	assert.deepStrictEqual(env.record.changes, [], 'nothing added when the section exists');
});

test('share links pasted several at once become nodes', async () => {
	const { env, view, out } = await renderView('nodes.js', dae.fixture());
	/* The page opens with its title (the map); the import button follows
	 * the nodes (before the map, it stood above the title). */
	assert.deepStrictEqual(out.children.map(c => c.tag), [ 'cbi-map', 'div' ]);
	assert.match(textOf(out.children[1]), /Import share links/);
	const map = env.record.maps[0];
	const uuid = '1386f85e-657b-4d6e-9d56-78badb75e1fd';
	const vmess = json => 'vmess://' + Buffer.from(JSON.stringify(json)).toString('base64');
	const text = [
		'# my subscription',
		'ss://YWVzLTI1Ni1nY206cGFzcw@192.0.2.80:8388#HK%201',
		'',
		'trojan://secret@192.0.2.83:443?sni=proxy.example#HK 1',
		vmess({ add: '192.0.2.84', port: '443', id: uuid, aid: '0' }),
		'socks5://192.0.2.80',
		'ftp://x:1#n1',
		'socks5://192.0.2.81:1080#n1',
		'http://192.0.2.82:3128#\'both "quotes"\'',
		'<img src=x onerror=alert(1)>://x:1',
		/* what dae cannot dial: a plugin, a transport other than tcp, REALITY, an XTLS flow, legacy
		 * VMess, an id that is no UUID, a stream cipher */
		'ss://YWVzLTI1Ni1nY206cGFzcw@192.0.2.80:8388/?plugin=obfs-local%3Bobfs%3Dhttp#plugin',
		'vless://' + uuid + '@192.0.2.85:443?type=ws&security=tls#ws',
		'vless://' + uuid + '@192.0.2.85:443?security=reality&pbk=abc#reality',
		'vless://' + uuid + '@192.0.2.85:443?security=tls&flow=xtls-rprx-vision#flow',
		vmess({ add: '192.0.2.84', port: '443', id: uuid, aid: '64', ps: 'legacy' }),
		vmess({ add: '192.0.2.84', port: '443', id: 'x' }),
		'ss://' + Buffer.from('rc4-md5:pw').toString('base64') + '@192.0.2.80:8388#rc4',
		'socks5://proxy.example:1080#by_name',
		'vless://' + uuid + '@192.0.2.85:443?security=tls&sni=proxy.example#VLESS'
	].join('\n');
	const res = await view.importLinks(map, text);
	/* a server given by name: the fixture's dns_a (udp://192.0.2.53:53) looks it up, in dae as here */
	assert.deepStrictEqual(res.nodes.map(n => n.name), [ 'HK_1', 'HK_1_2', 'vmess', 'n1_2', 'by_name', 'VLESS' ]);
	assert.deepStrictEqual(res.errors.map(e => e.line), [ 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17 ]);
	const why = [ /^ss: plugins/, /^vless: transport "ws" is not supported/, /^vless: security "reality"/,
		/^vless: flow "xtls-rprx-vision"/, /^vmess: alterId 64/, /^vmess: "id" "x" is not a UUID/,
		/^ss: stream cipher "rc4-md5"/ ];
	why.forEach((re, i) => assert.match(res.errors[4 + i].error, re));
	assert.deepStrictEqual(markup(env.record.notifications.map(n => n.node)), [], 'pasted text would be parsed as HTML');
	assert.strictEqual(env.record.saves, 1);
	assert.deepStrictEqual(env.uci.get('dae', 'n1_2', 'link'), 'socks5://192.0.2.81:1080#n1');
	assert.deepStrictEqual(env.uci.get('dae', 'by_name', 'link'), 'socks5://proxy.example:1080#by_name');
	assert.strictEqual(env.uci.get('dae', 'HK_1', '.type'), 'node');
	assert.match(env.record.notifications.map(n => n.text).join('\n'), /line 6/);

	/* What was added validates in dae. */
	const sections = env.store.map(s => ({
		type: s['.type'], name: s['.name'],
		options: Object.fromEntries(Object.entries(s).filter(([ k ]) => k[0] != '.'))
	}));
	const check = await dae.validate(sections);
	assert.deepStrictEqual(check.errors, []);

	/* ... and what was refused, dae refuses too (but the value with both quotes, which UCI text cannot hold for dae). */
	for (const e of res.errors.filter(e => !(e.link.includes('\'') && e.link.includes('"')))) {
		const r = await dae.validate(dae.fixture().map(s => s.name == 'n1' ? Object.assign({}, s, { options: { link: e.link } }) : s));
		assert.ok(r.errors.some(x => x.startsWith('node \'n1\', option \'link\'')), 'line ' + e.line + ': dae accepts ' + e.link);
	}
	dae.cleanup();
});

test('share links pasted with no upstream to look a server name up: names are refused, in both', async () => {
	for (const variant of NO_LOOKUP) {
		const sections = varied(variant);
		const { env, view } = await renderView('nodes.js', sections);
		const text = [ 'socks5://proxy.example:1080#by_name', 'socks5://192.0.2.82:1080#by_ip' ].join('\n');
		const res = await view.importLinks(env.record.maps[0], text);
		assert.deepStrictEqual(res.nodes.map(n => n.name), [ 'by_ip' ]);
		assert.deepStrictEqual(res.errors.map(e => e.line), [ 1 ]);
		const r = await dae.validate(sections.map(s => s.name == 'n1'
			? Object.assign({}, s, { options: { link: res.errors[0].link } }) : s));
		assert.deepStrictEqual(r.errors.map(e => e.replace(/'/g, '"')), [ 'node "n1", option "link": ' + res.errors[0].error ]);
		/* an upstream changed but not saved yet counts too (uci holds the change) */
		env.uci.set('dae', 'dns_b', 'address', 'udp://192.0.2.54');
		const again = await view.importLinks(env.record.maps[0], 'socks5://proxy.example:1080#by_name');
		assert.deepStrictEqual(again.errors, []);
		assert.deepStrictEqual(again.nodes.map(n => n.name), [ 'by_name' ]);
	}
	dae.cleanup();
});

test('the rule functions, schemes and reserved words the browser knows are the schema\'s', () => {
	const env = createEnv([]);
	installGlobals(env);
	const tools = env.requireModule('dae.tools');
	const opt = (type, name) => schemaSection(type).options.find(o => o.name == name);
	assert.deepStrictEqual(tools.REQUEST_FUNCTIONS, opt('dns', 'request_rule').functions);
	assert.deepStrictEqual(tools.RESPONSE_FUNCTIONS, opt('dns', 'response_rule').functions);
	assert.deepStrictEqual(tools.ROUTING_FUNCTIONS, opt('routing', 'rule').functions);
	assert.deepStrictEqual(tools.REQUEST_RESERVED, opt('dns', 'request_fallback').reserved);
	assert.deepStrictEqual(tools.RESPONSE_RESERVED, opt('dns', 'response_fallback').reserved);
	assert.deepStrictEqual(tools.ROUTING_RESERVED, opt('routing', 'fallback').reserved);
	assert.deepStrictEqual(tools.UPSTREAM_SCHEMES, opt('upstream', 'address').schemes);
	assert.deepStrictEqual(tools.LINK_SCHEMES, opt('node', 'link').schemes);
	assert.deepStrictEqual([ ...tools.POLICIES ].sort(), opt('group', 'policy').values.filter(v => !/\(N\)/.test(v)).sort());
	assert.deepStrictEqual(tools.SUPPORTED_SCHEMES, opt('upstream', 'address').supported);
	assert.deepStrictEqual(tools.PLAIN_SCHEMES, opt('upstream', 'address').resolvers);
});

test('the node table summarises links', async () => {
	const env = createEnv([]);
	installGlobals(env);
	const tools = env.requireModule('dae.tools');
	assert.strictEqual(tools.linkSummary('ss://YWVzLTI1Ni1nY206cGFzc0AxOTIuMC4yLjgwOjgzODg#x'), 'ss 192.0.2.80:8388');
	assert.strictEqual(tools.linkSummary('vmess://eyJhZGQiOiIxOTIuMC4yLjgwIiwicG9ydCI6IjQ0MyIsImlkIjoieCJ9'), 'vmess 192.0.2.80:443');
	assert.strictEqual(tools.linkSummary('trojan://pw@h.example:443?x=1#n'), 'trojan h.example:443');
	assert.strictEqual(tools.linkSummary(null), '-');
});

/* The completions a rule list's entry field offers: { list, options }. */
function completions(o, sid) {
	const node = o.renderWidget(sid, 0, []);
	const input = findNodes(node, n => n.tag == 'input')[0];
	const lists = findNodes(node, n => n.tag == 'datalist');
	return {
		list: input.attrs.list, title: input.attrs.title,
		ids: lists.map(l => l.attrs.id),
		options: lists.flatMap(l => l.children.filter(c => c.tag == 'option').map(c => c.attrs.value))
	};
}

test('the rule editors offer the rule sets dae geodata lists, and each one offered is a rule dae accepts', async () => {
	const geosite = [ 'geosite:cn', 'geosite:cn@ads', 'geosite:category-ads-all', 'geosite:google', 'geosite:google@ads', 'geosite:google@cn' ];
	const geoip = [ 'geoip:cn', 'geoip:private' ];
	const ext = [ 'ext:extra.dat:work' ];
	const wrap = (fn, sets) => sets.map(x => fn + '(' + x + ')');
	const want = {
		'routing.js routing.rule': wrap('domain', geosite).concat(wrap('dip', geoip), wrap('sip', geoip), wrap('domain', ext)),
		'dns.js dns.request_rule': wrap('qname', geosite).concat(wrap('qname', ext)),
		'dns.js dns.response_rule': wrap('qname', geosite).concat(wrap('ip', geoip), wrap('qname', ext))
	};
	/* What the real binary lists for the fixture's folder: broken.dat with its error, no text file. */
	const listing = JSON.parse(dae.listGeodata(dae.fixture()).stdout);
	assert.deepStrictEqual(listing.files.map(f => f.file), [ 'geosite.dat', 'geoip.dat', 'broken.dat', 'extra.dat' ]);
	assert.ok(listing.files[2].error, 'broken.dat has no error');

	for (const [ where, choices ] of Object.entries(want)) {
		const [ file, opt ] = where.split(' ');
		const [ type, name ] = opt.split('.');
		const { env } = await renderView(file, dae.fixture());
		assert.deepStrictEqual(env.record.execs.map(e => [ e.cmd ].concat(e.args).join(' ')), [ '/usr/bin/dae geodata --json' ], file);
		const s = env.record.maps[0].children.find(x => x.sectiontype == type);
		const o = s.children.find(c => c.option == name);
		const got = completions(o, type);
		assert.deepStrictEqual(got.options, choices, where);
		assert.deepStrictEqual(got.ids, [ got.list ], where + ': the entry field names its datalist');
		assert.ok(got.title, where + ': the field says what it offers');
		/* Picked and given a target, each is a rule the browser and dae accept. */
		const target = (type == 'routing') ? 'direct' : (name == 'request_rule' ? 'reject' : 'accept');
		const rules = choices.map(c => c + ' -> ' + target);
		for (const r of rules)
			assert.strictEqual(o.validate.call(o, type, r), true, r);
		const res = await dae.validate(dae.fixture().map(x => x.type == type
			? Object.assign({}, x, { options: Object.assign({}, x.options, { [name]: rules }) }) : x));
		assert.deepStrictEqual(res.errors, [], where);
	}
	dae.cleanup();
});

test('without the rule-set listing, no completions, and rule sets are checked for their form only', async () => {
	const { env } = await renderView('routing.js', dae.fixture(), { exec() { throw new Error('no dae here'); } });
	const o = env.record.maps[0].children[0].children.find(c => c.option == 'rule');
	const got = completions(o, 'routing');
	assert.deepStrictEqual([ got.list, got.options ], [ undefined, [] ]);
	assert.strictEqual(o.validate.call(o, 'routing', 'domain(geosite:anything) -> direct'), true);
	assert.notStrictEqual(o.validate.call(o, 'routing', 'domain(ext:x) -> direct'), true);
	assert.notStrictEqual(o.validate.call(o, 'routing', 'dip(geoip:cn@a) -> direct'), true);
});
