'use strict';
/*
 * A recorder of the LuCI client API, just enough to evaluate the dae views
 * under Node: it renders nothing. Views and modules are loaded the way
 * luci.js loads them (their `'require x as y'` directives become the
 * parameters of a function wrapping the file). `form` records every Map,
 * section and option a view declares (class, UCI option name, validate
 * function, choices, defaults); `uci` is an in-memory config that records
 * every change; `fs`, `rpc`, `ui` and `poll` record their calls and answer
 * from handlers the test gives. E() builds plain { tag, attrs, children }
 * objects so that a test can read the text a view would show.
 */

const fs = require('fs');
const path = require('path');

const RESOURCES = path.resolve(__dirname, '../../../luci-app-dae/htdocs/luci-static/resources');

/* ---- classes, as LuCI's Class.extend gives them ---- */

const Class = function() {};
Class.extend = function(props) {
	const Parent = this;
	const C = function() {
		if (!(this instanceof C))
			throw new TypeError('Constructor must not be called without "new"');
		if (typeof this.__init__ == 'function')
			this.__init__.apply(this, arguments);
	};
	C.prototype = Object.create(Parent.prototype);
	for (const k of Object.keys(props))
		C.prototype[k] = props[k];
	C.prototype.constructor = C;
	C.extend = Class.extend;
	C.instantiate = function(args) { return new (Function.prototype.bind.apply(C, [ null ].concat(args)))(); };
	C.isSubclass = function(other) { return typeof other == 'function' && other.prototype instanceof C; };
	C.displayName = props.__name__ || 'anonymous';
	return C;
};
Class.isSubclass = function(other) { return typeof other == 'function' && other.prototype instanceof Class; };
Class.prototype.varargs = function(args, offset) {
	return Array.prototype.slice.call(arguments, 2).concat(Array.prototype.slice.call(args, offset));
};
Class.prototype.super = function() {
	throw new Error('this.super() is not supported by the recorder: call Base.prototype.method.call(this, ...)');
};

/* ---- String.prototype.format, the subset LuCI code uses ---- */

function installFormat() {
	if (String.prototype.format && String.prototype.format.daeRecorder)
		return;
	const format = function() {
		const args = Array.prototype.slice.call(arguments);
		return String(this).replace(/%(-?\d*)(?:\.(\d+))?([sdfqhxXtm%])/g, function(m, pad, prec, type) {
			if (type == '%')
				return '%';
			const a = args.shift();
			let s;
			switch (type) {
			case 'd': s = String(Math.floor(+a || 0)); break;
			case 'f': s = (prec != null) ? (+a || 0).toFixed(+prec) : String(+a || 0); break;
			case 'x': s = (Math.floor(+a || 0)).toString(16); break;
			case 'X': s = (Math.floor(+a || 0)).toString(16).toUpperCase(); break;
			case 't': {
				let t = Math.floor(+a || 0);
				const d = Math.floor(t / 86400), h = Math.floor(t / 3600) % 24, mi = Math.floor(t / 60) % 60, se = t % 60;
				s = (d > 0 ? d + 'd ' : '') + (d > 0 || h > 0 ? h + 'h ' : '') + (d > 0 || h > 0 || mi > 0 ? mi + 'm ' : '') + se + 's';
				break;
			}
			case 'm': s = String(+a || 0); break;
			default: s = (a == null) ? '' : String(a);
			}
			if (pad && s.length < Math.abs(+pad))
				s = (+pad < 0) ? s.padEnd(-pad) : s.padStart(+pad);
			return s;
		});
	};
	format.daeRecorder = true;
	Object.defineProperty(String.prototype, 'format', { value: format, writable: true, configurable: true });
}

/* ---- DOM stand-in ---- */

function flat(children) {
	if (children == null)
		return [];
	if (!Array.isArray(children))
		return [ children ];
	return children.reduce((acc, c) => acc.concat(flat(c)), []);
}

/* `html`: the children were one string, which LuCI puts in innerHTML. */
function E(tag, attrs, children) {
	if (Array.isArray(tag))
		return { tag: '#fragment', attrs: {}, children: flat(tag).concat(flat(Array.isArray(attrs) ? attrs : children)) };
	if (Array.isArray(attrs) || typeof attrs != 'object' || attrs == null || attrs.tag)
		return { tag, attrs: {}, children: flat(attrs), html: typeof attrs == 'string' };
	return { tag, attrs: attrs || {}, children: flat(children), html: typeof children == 'string' };
}

/* The nodes whose HTML, as LuCI would set it, holds markup. */
function markup(node) {
	return findNodes(node, n => n.html && n.children.some(c => typeof c == 'string' && /[<&]/.test(c)));
}

/* Every text a node tree would show, in order. */
function textOf(node) {
	if (node == null)
		return '';
	if (typeof node != 'object')
		return String(node);
	if (Array.isArray(node))
		return node.map(textOf).join(' ');
	const own = (node.attrs && node.attrs.value != null && node.tag == 'input') ? String(node.attrs.value) : '';
	return [ own ].concat((node.children || []).map(textOf)).join(' ');
}

/* Every node of a tree matching `pred`. */
function findNodes(node, pred, out) {
	out = out || [];
	if (node && typeof node == 'object') {
		if (Array.isArray(node))
			node.forEach(n => findNodes(n, pred, out));
		else {
			if (pred(node))
				out.push(node);
			(node.children || []).forEach(n => findNodes(n, pred, out));
		}
	}
	return out;
}

/* ---- the environment ---- */

/*
 * sections: [ { type, name, anonymous, options: { opt: 'v' | [ 'v', ... ] } } ]
 * handlers: { exec(cmd, args) -> { code, stdout, stderr } | Promise,
 *             rpc(object, method, args) -> value }
 */
function createEnv(sections, handlers) {
	installFormat();
	handlers = handlers || {};
	const record = { maps: [], changes: [], execs: [], rpcs: [], notifications: [], modals: [], polls: [], saves: 0 };

	/* uci */
	let anonCount = 0;
	const store = [];
	for (const s of sections || []) {
		const obj = Object.assign({ '.type': s.type, '.name': s.name || ('cfg' + (++anonCount)), '.anonymous': !s.name }, JSON.parse(JSON.stringify(s.options || {})));
		store.push(obj);
	}
	const find = sid => store.find(s => s['.name'] == sid);
	const uci = Class.extend({ __name__: 'LuCI.uci' }).instantiate([]);
	Object.assign(uci, {
		load() { return Promise.resolve([ 'dae' ]); },
		sections(conf, type, cb) {
			const out = store.filter(s => type == null || s['.type'] == type);
			if (typeof cb == 'function')
				out.forEach(s => cb(s, s['.name']));
			return out;
		},
		get(conf, sid, opt) {
			const s = find(sid);
			if (!s)
				return null;
			if (opt == null)
				return s;
			const v = s[opt];
			return (v == null) ? null : (Array.isArray(v) ? v.slice() : String(v));
		},
		get_first(conf, type, opt) {
			const s = store.find(x => x['.type'] == type);
			return s ? this.get(conf, s['.name'], opt) : null;
		},
		set(conf, sid, opt, value) {
			record.changes.push([ 'set', sid, opt, value ]);
			const s = find(sid);
			if (s && opt != null && opt.charAt(0) != '.') {
				if (value == null || value === '')
					delete s[opt];
				else
					s[opt] = Array.isArray(value) ? value.slice() : String(value);
			}
		},
		unset(conf, sid, opt) { return this.set(conf, sid, opt, null); },
		add(conf, type, name) {
			record.changes.push([ 'add', type, name ]);
			const sid = name || ('new' + (++anonCount));
			if (!find(sid))
				store.push({ '.type': type, '.name': sid, '.anonymous': !name });
			return sid;
		},
		remove(conf, sid) {
			record.changes.push([ 'remove', sid ]);
			const i = store.findIndex(s => s['.name'] == sid);
			if (i >= 0)
				store.splice(i, 1);
		},
		save() { return Promise.resolve(); },
		apply() { return Promise.resolve(); },
		changes() { return Promise.resolve({}); }
	});

	/* form */
	const AbstractValue = Class.extend({
		__name__: 'CBI.AbstractValue',
		__init__(map, section, option, title, description) {
			this.map = map;
			this.section = section;
			this.option = option;
			this.title = title || '';
			this.description = description || '';
			this.deps = [];
			this.keylist = [];
			this.vallist = [];
			this.default = null;
			this.rmempty = true;
			this.optional = false;
		},
		value(key, val) {
			this.keylist.push(String(key));
			this.vallist.push(val != null ? val : key);
		},
		depends(field, value) {
			this.deps.push((typeof field == 'string') ? { [field]: value } : field);
		},
		cfgvalue(section_id) {
			return uci.get(this.uciconfig || this.map.config, this.ucisection || section_id, this.ucioption || this.option);
		},
		formvalue(section_id) { return this.cfgvalue(section_id); },
		load(section_id) { return this.cfgvalue(section_id); },
		write(section_id, value) {
			return uci.set(this.uciconfig || this.map.config, this.ucisection || section_id, this.ucioption || this.option, value);
		},
		remove(section_id) {
			return uci.unset(this.uciconfig || this.map.config, this.ucisection || section_id, this.ucioption || this.option);
		},
		validate() { return true; },
		textvalue(section_id) { return this.cfgvalue(section_id); }
	});
	const valueClass = (name, extra) => AbstractValue.extend(Object.assign({ __name__: name }, extra || {}));
	const Flag = valueClass('CBI.Flag', {
		__init__() {
			AbstractValue.prototype.__init__.apply(this, arguments);
			this.enabled = '1';
			this.disabled = '0';
			this.default = this.disabled;
		}
	});
	const AbstractSection = Class.extend({
		__name__: 'CBI.AbstractSection',
		__init__(map, sectiontype, title, description) {
			this.map = map;
			this.sectiontype = sectiontype;
			this.title = title || '';
			this.description = description || '';
			this.children = [];
			this.addremove = false;
		},
		option(cls, ...args) {
			if (!AbstractValue.isSubclass(cls) && cls !== AbstractValue)
				throw new TypeError('Class must be a descendent of CBIAbstractValue');
			const o = new cls(this.map, this, ...args);
			this.children.push(o);
			return o;
		},
		tab(name, title, description) {
			this.tabs = this.tabs || {};
			if (this.tabs[name])
				throw new Error('Tab already declared: ' + name);
			this.tabs[name] = { name, title, description };
		},
		taboption(tab, ...args) {
			if (!this.tabs || !this.tabs[tab])
				throw new Error('Associated tab not declared: ' + tab);
			const o = this.option(...args);
			o.tab = tab;
			return o;
		},
		cfgsections() {
			return uci.sections(this.map.config, this.sectiontype).map(s => s['.name']).filter(sid => this.filter(sid));
		},
		filter() { return true; },
		formvalue(section_id, option) {
			const o = this.children.find(c => (c.ucioption || c.option) == option);
			return o ? o.formvalue(section_id) : null;
		},
		handleAdd(ev, name) {
			uci.add(this.map.config, this.sectiontype, name);
			return this.map.save(null, true);
		},
		handleRemove(section_id) {
			uci.remove(this.map.config, section_id);
			return this.map.save(null, true);
		}
	});
	const TypedSection = AbstractSection.extend({ __name__: 'CBI.TypedSection' });
	const NamedSection = AbstractSection.extend({
		__name__: 'CBI.NamedSection',
		__init__(map, section, sectiontype, title, description) {
			AbstractSection.prototype.__init__.call(this, map, sectiontype, title, description);
			this.section = section;
		},
		cfgsections() { return [ this.section ]; }
	});
	const TableSection = TypedSection.extend({ __name__: 'CBI.TableSection', tab() { throw new Error('Tabs are not supported by TableSection'); } });
	const GridSection = TableSection.extend({ __name__: 'CBI.GridSection', tab: AbstractSection.prototype.tab });
	const CBIMap = Class.extend({
		__name__: 'CBI.Map',
		__init__(config, title, description) {
			this.config = config;
			this.title = title || '';
			this.description = description || '';
			this.children = [];
			this.data = uci;
			record.maps.push(this);
		},
		section(cls, ...args) {
			if (!AbstractSection.isSubclass(cls))
				throw new TypeError('Class must be a descendent of CBIAbstractSection');
			const s = new cls(this, ...args);
			this.children.push(s);
			return s;
		},
		chain() {},
		load() { return Promise.resolve(); },
		render() { return Promise.resolve({ tag: 'cbi-map', attrs: { config: this.config }, children: [], map: this }); },
		save() { record.saves++; return Promise.resolve(); },
		reset() { return Promise.resolve(); },
		lookupOption() { return null; }
	});
	const form = Class.extend({ __name__: 'LuCI.form' }).instantiate([]);
	Object.assign(form, {
		Map: CBIMap,
		JSONMap: CBIMap,
		AbstractSection, TypedSection, NamedSection, TableSection, GridSection,
		AbstractValue,
		Value: valueClass('CBI.Value'),
		ListValue: valueClass('CBI.ListValue'),
		RichListValue: valueClass('CBI.RichListValue'),
		Flag,
		MultiValue: valueClass('CBI.MultiValue'),
		DynamicList: valueClass('CBI.DynamicList', {
			/* ui.DynamicList's tree (the entry field in div.add-item), with
			 * the DOM calls a view may make on it. */
			renderWidget(section_id) {
				const input = E('input', { id: 'widget.cbid.dae.' + section_id + '.' + this.option, type: 'text', 'class': 'cbi-input-text', placeholder: this.placeholder });
				input.setAttribute = (k, v) => { input.attrs[k] = String(v); };
				const dl = E('div', { 'class': 'cbi-dynlist' }, [ E('div', { 'class': 'add-item control-group' }, [ input ]) ]);
				dl.querySelector = sel => (sel == '.add-item > input[type="text"]') ? input : null;
				dl.appendChild = child => { dl.children.push(child); return child; };
				return dl;
			}
		}),
		TextValue: valueClass('CBI.TextValue'),
		DummyValue: valueClass('CBI.DummyValue'),
		Button: valueClass('CBI.Button'),
		HiddenValue: valueClass('CBI.HiddenValue'),
		FileUpload: valueClass('CBI.FileUpload'),
		SectionValue: valueClass('CBI.SectionValue')
	});

	/* tools.widgets */
	const widgets = Class.extend({ __name__: 'LuCI.tools.widgets' }).instantiate([]);
	Object.assign(widgets, {
		DeviceSelect: valueClass('CBI.DeviceSelect', {
			__init__() {
				AbstractValue.prototype.__init__.apply(this, arguments);
				this.multiple = false;
			}
		}),
		NetworkSelect: valueClass('CBI.NetworkSelect'),
		ZoneSelect: valueClass('CBI.ZoneSelect')
	});

	/* ui, dom, poll, rpc, fs, network */
	const ui = Class.extend({ __name__: 'LuCI.ui' }).instantiate([]);
	Object.assign(ui, {
		addNotification(title, children, cls) { record.notifications.push({ title, text: textOf(children), node: children, cls }); return E('div', {}, children); },
		showModal(title, children) { record.modals.push({ title, body: children }); return E('div', {}, children); },
		hideModal() {},
		createHandlerFn(ctx, fn, ...args) {
			return function(ev) { return (typeof fn == 'string' ? ctx[fn] : fn).apply(ctx, args.concat([ ev ])); };
		},
		itemlist(node, items) { return E('dl', {}, items); },
		changes: { apply() { return Promise.resolve(); } }
	});
	const dom = Class.extend({ __name__: 'LuCI.dom' }).instantiate([]);
	Object.assign(dom, {
		content(node, children) { if (node) node.children = flat(children); return node; },
		append(node, children) { if (node) node.children = (node.children || []).concat(flat(children)); return node; },
		create: E,
		elem(n) { return n != null && typeof n == 'object' && 'tag' in n; }
	});
	const poll = Class.extend({ __name__: 'LuCI.poll' }).instantiate([]);
	Object.assign(poll, {
		add(fn, interval) { record.polls.push({ fn, interval }); return true; },
		remove() { return true; },
		start() {}, stop() {}, active() { return false; }
	});
	const rpc = Class.extend({ __name__: 'LuCI.rpc' }).instantiate([]);
	Object.assign(rpc, {
		declare(opts) {
			return function() {
				const args = Array.prototype.slice.call(arguments);
				record.rpcs.push({ object: opts.object, method: opts.method, args });
				return Promise.resolve().then(() => handlers.rpc ? handlers.rpc(opts.object, opts.method, args, opts) : null);
			};
		}
	});
	const fsmod = Class.extend({ __name__: 'LuCI.fs' }).instantiate([]);
	const exec = (cmd, args) => {
		record.execs.push({ cmd, args: (args || []).slice() });
		return Promise.resolve().then(() => handlers.exec ? handlers.exec(cmd, args || []) : { code: 0, stdout: '', stderr: '' });
	};
	Object.assign(fsmod, {
		exec,
		exec_direct(cmd, args) { return exec(cmd, args).then(r => r.stdout || ''); },
		read() { return Promise.reject(new Error('fs.read is not allowed for dae views')); },
		write() { return Promise.reject(new Error('fs.write is not allowed for dae views')); },
		stat() { return Promise.reject(new Error('fs.stat is not allowed for dae views')); },
		list() { return Promise.reject(new Error('fs.list is not allowed for dae views')); }
	});
	const network = Class.extend({ __name__: 'LuCI.network' }).instantiate([]);
	Object.assign(network, {
		getDevices() { return Promise.resolve([]); },
		getNetworks() { return Promise.resolve([]); }
	});
	const view = Class.extend({
		__name__: 'LuCI.view',
		load() {},
		render() {},
		handleSave() { return Promise.resolve(); },
		handleSaveApply() { return Promise.resolve(); },
		handleReset() { return Promise.resolve(); },
		addFooter() { return E('div', {}, []); }
	});

	const L = {
		bind(fn, self, ...args) { return fn.bind(self, ...args); },
		resolveDefault(p, def) { return Promise.resolve(p).catch(() => def); },
		toArray(v) {
			if (v == null) return [];
			if (Array.isArray(v)) return v;
			if (typeof v == 'object') return [ v ];
			const s = String(v).trim();
			return s == '' ? [] : s.split(/\s+/);
		},
		isObject(v) { return v != null && typeof v == 'object'; },
		raise(type, fmt) { throw new Error(type + ': ' + fmt); },
		error(type, fmt) { throw new Error(type + ': ' + fmt); },
		url() { return '/cgi-bin/luci/' + Array.prototype.join.call(arguments, '/'); },
		resource() { return '/luci-static/resources/' + Array.prototype.join.call(arguments, '/'); },
		hasSystemFeature() { return true; },
		env: { pollinterval: 5 },
		dom, ui, Class, Poll: poll
	};

	const modules = {
		baseclass: Class, view, form, uci, ui, dom, poll, rpc, fs: fsmod, network,
		'tools.widgets': widgets
	};
	const loaded = {};

	/* Loads a class file as luci.js does and returns its class (views) or
	 * its instance (modules). */
	function loadFile(file, asModule) {
		const source = fs.readFileSync(file, 'utf8');
		const deps = parseDirectives(source);
		const names = [], values = [];
		for (const d of deps.requires) {
			names.push(d.as);
			values.push(requireModule(d.name));
		}
		const factory = new Function('window', 'document', 'L', ...names, source);
		const cls = factory.apply(factory, [ {}, {}, L ].concat(values));
		if (!Class.isSubclass(cls))
			throw new TypeError(file + ': the factory does not return a class');
		return asModule ? new cls() : cls;
	}

	function requireModule(name) {
		if (modules[name])
			return modules[name];
		if (loaded[name])
			return loaded[name];
		const file = path.join(RESOURCES, name.replace(/\./g, '/') + '.js');
		if (!fs.existsSync(file))
			throw new Error('module "' + name + '" is neither a LuCI base module known to the recorder nor a file of the app');
		loaded[name] = loadFile(file, true);
		return loaded[name];
	}

	return {
		record, uci, store, form, modules, E, L,
		requireModule,
		loadView(rel) { return loadFile(path.join(RESOURCES, rel), false); }
	};
}

/* The `'require ...'` directives of a class file, as luci.js reads them. */
function parseDirectives(source) {
	const requires = [];
	const strings = [];
	const re = /^\s*(?:\/\*[\s\S]*?\*\/\s*|\/\/[^\n]*\n\s*)*(['"])((?:(?!\1)[^\\\n])*)\1\s*;?/;
	let rest = source;
	for (;;) {
		const m = re.exec(rest);
		if (!m)
			break;
		strings.push(m[2]);
		rest = rest.slice(m[0].length);
	}
	let strict = false;
	for (const s of strings) {
		const r = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/.exec(s);
		if (r)
			requires.push({ name: r[1], as: r[2] || r[1].replace(/[^a-zA-Z0-9_]/g, '_') });
		else if (/^use[ \t]+strict$/.test(s))
			strict = true;
		else
			break;
	}
	return { strict, strings, requires };
}

function installGlobals(env) {
	global.E = env.E;
	global._ = s => s;
	global.N_ = (n, a, b) => (n == 1 ? a : b);
	global.L = env.L;
}

module.exports = { createEnv, installGlobals, parseDirectives, textOf, findNodes, markup, RESOURCES };
