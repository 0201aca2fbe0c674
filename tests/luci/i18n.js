'use strict';
/*
 * Translations of luci-app-dae.
 *
 *   node tests/luci/i18n.js --write   regenerate po/templates/dae.pot from the
 *                                     sources and merge it into every po/LANG/dae.po
 *                                     (keeps translations, adds new strings
 *                                     untranslated, drops the ones gone)
 *   node tests/luci/i18n.js --check   fail unless the committed template is what
 *                                     the sources give, and every language has
 *                                     every string translated, with the same
 *                                     %-placeholders in the same order
 *
 * Strings are taken, as LuCI's scanner does, from _('...') and
 * N_(n, '...', '...') calls in the JavaScript (parsed, so only literal
 * arguments count: anything else is an error), the titles of menu.d and the
 * descriptions of acl.d. The template is written as the LuCI tree writes
 * its own (build/i18n-scan.pl, then i18n-update.pl for the languages):
 * white space in a msgid collapsed, entries sorted by msgid, each one's
 * references sorted by file and line, and the files named where the app
 * lives in the LuCI feed (applications/luci-app-dae/htdocs/...:LINE), so a
 * regeneration there changes nothing.
 */

const fs = require('fs');
const path = require('path');
const espree = require('espree');

const ROOT = path.resolve(__dirname, '../..');
const APP = path.join(ROOT, 'luci-app-dae');
const POT = path.join(APP, 'po/templates/dae.pot');
const PO_DIR = path.join(APP, 'po');
/* Where the app is in the LuCI feed's tree: the references start there. */
const LUCI_TREE_DIR = 'applications/luci-app-dae';

/* Strings a translation may leave as they are. */
const SAME_EVERYWHERE = [ 'dae', 'DNS', 'random' ];

function files(dir, ext) {
	return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => {
		const p = path.join(dir, e.name);
		return e.isDirectory() ? files(p, ext) : (e.name.endsWith(ext) ? [ p ] : []);
	}).sort();
}

function rel(file) {
	return path.relative(ROOT, file).split(path.sep).join('/');
}

/* A source file as the LuCI tree's templates name it. */
function ref(file) {
	return LUCI_TREE_DIR + '/' + path.relative(APP, file).split(path.sep).join('/');
}

/* White space as LuCI's scanner leaves it: tabs and newlines made spaces,
 * runs of spaces one, the ends trimmed. */
function collapse(s) {
	return s.replace(/[\t\n]/g, ' ').replace(/ {2,}/g, ' ').replace(/^ | $/g, '');
}

/* References by file, then line (as i18n-scan.pl orders them). */
function byFileLine(a, b) {
	const [ fa, la ] = [ a.replace(/:\d+$/, ''), +a.replace(/^.*:/, '') ];
	const [ fb, lb ] = [ b.replace(/:\d+$/, ''), +b.replace(/^.*:/, '') ];
	return fa < fb ? -1 : fa > fb ? 1 : la - lb;
}

/* A string literal, or literals joined with +; null otherwise. */
function literal(node) {
	if (node && node.type == 'Literal' && typeof node.value == 'string')
		return node.value;
	if (node && node.type == 'BinaryExpression' && node.operator == '+') {
		const a = literal(node.left), b = literal(node.right);
		return (a != null && b != null) ? a + b : null;
	}
	return null;
}

function walk(node, fn) {
	if (!node || typeof node.type != 'string')
		return;
	fn(node);
	for (const key of Object.keys(node)) {
		if (key == 'parent')
			continue;
		const v = node[key];
		if (Array.isArray(v))
			v.forEach(c => walk(c, fn));
		else if (v && typeof v.type == 'string')
			walk(v, fn);
	}
}

/* { key: { msgid, plural, refs: [file:line] } } in the order met. */
function scan() {
	const entries = new Map(), errors = [];
	function add(msgid, plural, ref) {
		msgid = collapse(msgid);
		plural = plural == null ? null : collapse(plural);
		if (msgid === '') {
			errors.push(ref + ': an empty string to translate');
			return;
		}
		const key = msgid + '\u0000' + (plural || '');
		if (!entries.has(key))
			entries.set(key, { msgid, plural, refs: [] });
		const e = entries.get(key);
		if (!e.refs.includes(ref))
			e.refs.push(ref);
	}

	for (const file of files(path.join(APP, 'htdocs'), '.js')) {
		const ast = espree.parse(fs.readFileSync(file, 'utf8'), {
			ecmaVersion: 2022, sourceType: 'script', loc: true,
			ecmaFeatures: { globalReturn: true }
		});
		walk(ast, node => {
			if (node.type != 'CallExpression' || node.callee.type != 'Identifier')
				return;
			const where = ref(file) + ':' + node.loc.start.line;
			if (node.callee.name == '_') {
				const msgid = literal(node.arguments[0]);
				if (msgid == null)
					errors.push(where + ': _() needs a string literal, or the string cannot be translated');
				else
					add(msgid, null, where);
			}
			else if (node.callee.name == 'N_') {
				const one = literal(node.arguments[1]), many = literal(node.arguments[2]);
				if (one == null || many == null)
					errors.push(where + ': N_() needs string literals');
				else
					add(one, many, where);
			}
		});
	}

	function jsonStrings(file, key) {
		const text = fs.readFileSync(file, 'utf8');
		JSON.parse(text);
		text.split('\n').forEach((line, i) => {
			const m = new RegExp('^\\s*"' + key + '"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*")').exec(line);
			if (m)
				add(JSON.parse(m[1]), null, ref(file) + ':' + (i + 1));
		});
	}
	for (const file of files(path.join(APP, 'root/usr/share/luci/menu.d'), '.json'))
		jsonStrings(file, 'title');
	for (const file of files(path.join(APP, 'root/usr/share/rpcd/acl.d'), '.json'))
		jsonStrings(file, 'description');

	for (const e of entries.values())
		e.refs.sort(byFileLine);
	return { entries: [ ...entries.values() ].sort((a, b) => a.msgid < b.msgid ? -1 : a.msgid > b.msgid ? 1 : 0), errors };
}

function escape(s) {
	return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
}

/* `keyword "text"`, wrapped at spaces to lines of at most 79 columns. */
function field(keyword, text) {
	const esc = escape(text);
	if (keyword.length + esc.length + 3 <= 79 && !/\\n./.test(esc))
		return keyword + ' "' + esc + '"\n';
	const chunks = [];
	let line = '';
	for (const word of esc.match(/[^ ]+ *| +/g) || []) {
		if (line.length && line.length + word.length > 77) {
			chunks.push(line);
			line = '';
		}
		line += word;
		if (/\\n$/.test(line)) {
			chunks.push(line);
			line = '';
		}
	}
	if (line.length)
		chunks.push(line);
	return keyword + ' ""\n' + chunks.map(c => '"' + c + '"\n').join('');
}

function entryText(e, translation) {
	let out = e.refs.map(r => '#: ' + r + '\n').join('');
	out += field('msgid', e.msgid);
	if (e.plural) {
		out += field('msgid_plural', e.plural);
		const forms = translation ? translation.msgstr : [ '', '' ];
		forms.forEach((f, i) => { out += field('msgstr[' + i + ']', f); });
	}
	else {
		out += field('msgstr', translation ? translation.msgstr[0] : '');
	}
	return out;
}

function pot(entries) {
	return 'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8"\n' +
		entries.map(e => '\n' + entryText(e, null)).join('');
}

/* Parses a po file: { header, entries: Map(key -> { msgid, plural, msgstr: [] }) }. */
function parsePo(text, file) {
	const entries = new Map();
	let header = null, cur = null, last = null;
	const unq = (s, n) => {
		const m = /^"((?:[^"\\]|\\.)*)"$/.exec(s.trim());
		if (!m)
			throw new Error(file + ':' + n + ': not a quoted string: ' + s);
		return m[1].replace(/\\(.)/g, (x, c) => ({ n: '\n', t: '\t', '"': '"', '\\': '\\' })[c] || ('\\' + c));
	};
	const flush = () => {
		if (!cur)
			return;
		if (cur.msgid === '' && !cur.plural)
			header = cur.msgstr[0];
		else {
			const key = cur.msgid + '\u0000' + (cur.plural || '');
			if (entries.has(key))
				throw new Error(file + ': "' + cur.msgid + '" is there twice');
			entries.set(key, cur);
		}
		cur = null;
	};
	text.split('\n').forEach((line, i) => {
		const n = i + 1;
		if (/^\s*$/.test(line) || /^#/.test(line)) {
			if (/^#~/.test(line))
				throw new Error(file + ':' + n + ': obsolete entries (#~) should be removed');
			return;
		}
		let m;
		if ((m = /^msgid\s+(.*)$/.exec(line))) {
			flush();
			cur = { msgid: unq(m[1], n), plural: null, msgstr: [] };
			last = v => { cur.msgid += v; };
		}
		else if ((m = /^msgid_plural\s+(.*)$/.exec(line)) && cur) {
			cur.plural = unq(m[1], n);
			last = v => { cur.plural += v; };
		}
		else if ((m = /^msgstr(?:\[(\d+)\])?\s+(.*)$/.exec(line)) && cur) {
			const idx = m[1] ? +m[1] : 0;
			cur.msgstr[idx] = unq(m[2], n);
			last = v => { cur.msgstr[idx] += v; };
		}
		else if (/^"/.test(line) && last) {
			last(unq(line, n));
		}
		else {
			throw new Error(file + ':' + n + ': cannot read: ' + line);
		}
	});
	flush();
	return { header, entries };
}

function placeholders(s) {
	return (s.match(/%(?:-?\d*)(?:\.\d+)?[sdfqhxXtm%]/g) || []).join(' ');
}

function languages() {
	return fs.readdirSync(PO_DIR).filter(d => d != 'templates' && fs.existsSync(path.join(PO_DIR, d, 'dae.po'))).sort();
}

function poHeader(lang) {
	return 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: ' + lang +
		'\\n"\n"Plural-Forms: nplurals=1; plural=0;\\n"\n';
}

function main() {
	const mode = process.argv[2];
	const { entries, errors } = scan();
	if (errors.length) {
		errors.forEach(e => console.error('i18n: ' + e));
		process.exit(1);
	}
	const template = pot(entries);

	if (mode == '--write') {
		fs.mkdirSync(path.dirname(POT), { recursive: true });
		fs.writeFileSync(POT, template);
		for (const lang of languages()) {
			const file = path.join(PO_DIR, lang, 'dae.po');
			/* Translations kept, found by their msgid as the template now writes it. */
			const old = new Map();
			for (const t of parsePo(fs.readFileSync(file, 'utf8'), file).entries.values())
				old.set(collapse(t.msgid) + '\u0000' + collapse(t.plural || ''), t);
			const text = poHeader(lang) + entries.map(e => '\n' + entryText(e, old.get(e.msgid + '\u0000' + (e.plural || '')) || null)).join('');
			fs.writeFileSync(file, text);
		}
		console.log('i18n: wrote ' + rel(POT) + ' (' + entries.length + ' strings) and ' + languages().map(l => l + '/dae.po').join(', '));
		return;
	}

	if (mode != '--check') {
		console.error('usage: node tests/luci/i18n.js --write | --check');
		process.exit(2);
	}

	const problems = [];
	const committed = fs.existsSync(POT) ? fs.readFileSync(POT, 'utf8') : '';
	if (committed != template) {
		const a = committed.split('\n'), b = template.split('\n');
		const i = a.findIndex((l, k) => l != b[k]);
		problems.push(rel(POT) + ' is not what the sources give (first difference at line ' + (i + 1) +
			': committed ' + JSON.stringify(a[i]) + ', sources ' + JSON.stringify(b[i]) + '); run node tests/luci/i18n.js --write');
	}
	const langs = languages();
	if (!langs.includes('zh_Hans'))
		problems.push('no zh_Hans translation');
	for (const lang of langs) {
		const file = path.join(PO_DIR, lang, 'dae.po');
		let po;
		try {
			po = parsePo(fs.readFileSync(file, 'utf8'), rel(file));
		}
		catch (e) {
			problems.push(e.message);
			continue;
		}
		if (!/charset=UTF-8/.test(po.header || ''))
			problems.push(rel(file) + ': the header does not say charset=UTF-8');
		const wanted = new Set(entries.map(e => e.msgid + '\u0000' + (e.plural || '')));
		for (const e of entries) {
			const t = po.entries.get(e.msgid + '\u0000' + (e.plural || ''));
			const where = rel(file) + ': ' + JSON.stringify(e.msgid);
			if (!t || !t.msgstr.length || t.msgstr.some(s => !s)) {
				problems.push(where + ' is not translated');
				continue;
			}
			for (const s of t.msgstr) {
				if (placeholders(s) != placeholders(e.msgid))
					problems.push(where + ': placeholders ' + JSON.stringify(placeholders(s)) + ' in the translation, ' + JSON.stringify(placeholders(e.msgid)) + ' in the original');
				if (s == e.msgid && !SAME_EVERYWHERE.includes(s))
					problems.push(where + ': the translation is the English text');
			}
		}
		for (const key of po.entries.keys())
			if (!wanted.has(key))
				problems.push(rel(file) + ': ' + JSON.stringify(key.split('\u0000')[0]) + ' is no longer in the sources');
	}

	if (problems.length) {
		problems.forEach(p => console.error('i18n: ' + p));
		console.error('i18n: ' + problems.length + ' problem(s)');
		process.exit(1);
	}
	console.log('i18n: ' + entries.length + ' strings; template up to date; ' + langs.join(', ') + ' complete');
}

if (require.main === module)
	main();

module.exports = { scan, parsePo, pot };
