'use strict';
'require baseclass';
'require form';
'require fs';
'require uci';
'require ui';

/*
 * dae.tools: what the dae settings views share.
 *
 * The value checks here follow, rule for rule, what `dae validate` enforces
 * (src/config/schema.rs, uci.rs, url.rs, check.rs, rule.rs, dialer/link.rs
 * and controller::check), so that a value the browser accepts is one the
 * daemon accepts. tests/luci/run.sh feeds the same values to both and
 * fails where they disagree. Also here: section names and the references
 * between sections, reading share links pasted several at once, and the
 * rule sets installed (`dae geodata --json`), which the rule checks and the
 * rule editors' completions use.
 */

var CONFIG = 'dae';

/* Rust's notion of white space (char::is_whitespace, str::trim). */
var WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
var RE_WS = new RegExp('[' + WS + ']');
var RE_TRIM = new RegExp('^[' + WS + ']+|[' + WS + ']+$', 'g');

var UPSTREAM_SCHEMES = [ 'udp', 'tcp', 'tcp+udp', 'tls', 'https', 'h3', 'quic' ];
/* What the default dae build can forward to (forwarder::check_supported);
 * a build without some of its cargo features refuses the others. */
var SUPPORTED_SCHEMES = [ 'udp', 'tcp', 'tcp+udp', 'tls', 'https', 'h3', 'quic' ];
/* Plain upstreams at an IP address can look up the host names of the
 * others (forwarder::can_resolve). */
var PLAIN_SCHEMES = [ 'udp', 'tcp', 'tcp+udp' ];
/* Whether a value holds both kinds of quote, which dae's reader cannot
 * take (config/quoting.rs). */
function bothQuotes(v) {
	v = String(v);
	return v.indexOf('\'') >= 0 && v.indexOf('"') >= 0;
}

var LINK_SCHEMES = [ 'socks5', 'http', 'https', 'ss', 'trojan', 'vless', 'vmess' ];
var REQUEST_FUNCTIONS = [ 'qname', 'qtype' ];
var RESPONSE_FUNCTIONS = [ 'qname', 'qtype', 'upstream', 'ip' ];
var ROUTING_FUNCTIONS = [ 'dip', 'sip', 'dport', 'sport', 'l4proto', 'ipversion', 'domain', 'mac', 'pname', 'dscp' ];
var REQUEST_RESERVED = [ 'asis', 'reject' ];
var RESPONSE_RESERVED = [ 'accept', 'reject' ];
var ROUTING_RESERVED = [ 'direct', 'block', 'must_direct' ];
var POLICIES = [ 'random', 'min', 'min_avg10', 'min_moving_avg' ];
/* Names a section of that type may not have (the rules would misread them). */
var RESERVED_NAMES = {
	upstream: [ 'asis', 'reject', 'accept' ],
	group: ROUTING_RESERVED
};
/* Record types dae understands by name (hickory-proto's list). */
var RECORD_TYPES = [ 'A', 'AAAA', 'ANAME', 'AXFR', 'CAA', 'CDNSKEY', 'CERT', 'CDS', 'CNAME', 'CSYNC',
	'DNAME', 'DNSKEY', 'DS', 'HINFO', 'HTTPS', 'KEY', 'MX', 'NAPTR', 'NSEC', 'NSEC3', 'NSEC3PARAM', 'NS',
	'NULL', 'OPENPGPKEY', 'PTR', 'RRSIG', 'SIG', 'SMIMEA', 'SOA', 'SRV', 'SSHFP', 'SVCB', 'TLSA', 'TXT',
	'TSIG', 'ANY', '*' ];

/* A check that failed: the message is shown under the field. */
function Problem(message) {
	this.message = message;
}

function fail(message) {
	throw new Problem(message);
}

function rtrim(s) {
	return s.replace(RE_TRIM, '');
}

function asciiLower(s) {
	return s.replace(/[A-Z]/g, function(c) { return c.toLowerCase(); });
}

function asciiUpper(s) {
	return s.replace(/[a-z]/g, function(c) { return c.toUpperCase(); });
}

function utf8Length(s) {
	try {
		return encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, 'x').length;
	}
	catch (e) {
		return s.length * 3;
	}
}

/* `s.parse::<uN>()`: an optional '+', digits; null when it does not fit. */
function parseUnsigned(s, max) {
	var m = /^\+?([0-9]+)$/.exec(s);
	if (!m)
		return null;
	var digits = m[1].replace(/^0+(?=.)/, '');
	if (digits.length > String(max).length)
		return null;
	var n = Number(digits);
	return (n <= max) ? n : null;
}

/* Digits only (no sign), as the address parsers read ports and scopes. */
function parseDigits(s, max) {
	return /^[0-9]+$/.test(s) ? parseUnsigned(s, max) : null;
}

function octetOk(x) {
	return x.length <= 3 && !(x.length > 1 && x.charAt(0) == '0') && +x <= 255;
}

function isIpv4(s) {
	var m = /^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)$/.exec(s);
	return !!m && m.slice(1).every(octetOk);
}

/* Reads an IPv6 address at `pos` the way Rust's parser does; returns where
 * it ended, or -1. */
function readIpv6(s, pos) {
	function sep(k) {
		if (k == 0)
			return true;
		if (s.charAt(pos) != ':')
			return false;
		pos++;
		return true;
	}

	function groups(limit) {
		for (var k = 0; k < limit; k++) {
			var start = pos;

			if (k < limit - 1 && sep(k)) {
				var v4 = /^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)/.exec(s.slice(pos));
				if (v4 && v4.slice(1).every(octetOk)) {
					pos += v4[0].length;
					return [ k + 2, true ];
				}
			}
			pos = start;

			if (sep(k)) {
				var g = /^[0-9a-fA-F]+/.exec(s.slice(pos));
				if (g && g[0].length <= 4) {
					pos += g[0].length;
					continue;
				}
			}
			pos = start;
			return [ k, false ];
		}
		return [ limit, false ];
	}

	var head = groups(8);
	if (head[0] == 8)
		return pos;
	if (head[1] || s.substr(pos, 2) != '::')
		return -1;
	pos += 2;
	groups(7 - head[0]);
	return pos;
}

function isIpv6(s) {
	return readIpv6(s, 0) == s.length;
}

function isIp(s) {
	return isIpv4(s) || isIpv6(s);
}

/* url::port_number */
function portNumber(p) {
	var n = parseUnsigned(p, 4294967295);
	if (n == null || n < 1 || n > 65535)
		fail(_('"%s" is not a port (1 to 65535)').format(p));
	return n;
}

/* url::host_name: a DNS name, returned lowercase without the final dot. */
function hostName(s) {
	var name = asciiLower(s.replace(/\.$/, ''));
	if (name == '')
		fail(_('an empty name'));
	if (utf8Length(name) > 253)
		fail(_('"%s" is longer than 253 characters').format(s));
	name.split('.').forEach(function(label) {
		if (label == '')
			fail(_('"%s" has an empty label (two dots in a row?)').format(s));
		if (utf8Length(label) > 63)
			fail(_('"%s" has a label longer than 63 characters').format(s));
		if (!/^[A-Za-z0-9_-]+$/.test(label))
			fail(_('"%s" is not a valid name (letters, digits, "-", "_" and dots only)').format(s));
		if (label.charAt(0) == '-' || label.charAt(label.length - 1) == '-')
			fail(_('"%s" has a label starting or ending with "-"').format(s));
	});
	return name;
}

/* `host[:port]` or `[v6][:port]` */
function hostPort(authority) {
	var host, port = null;
	if (authority.charAt(0) == '[') {
		var close = authority.indexOf(']');
		if (close < 0)
			fail(_('"%s": "[" without "]"').format(authority));
		host = authority.slice(1, close);
		var after = authority.slice(close + 1);
		if (after != '') {
			if (after.charAt(0) != ':')
				fail(_('"%s": expected ":port" after "]"').format(authority));
			port = after.slice(1);
		}
	}
	else if (authority.split(':').length > 2) {
		fail(_('"%s": an IPv6 address needs brackets, as in [2001:db8::1]:53').format(authority));
	}
	else {
		var colon = authority.indexOf(':');
		host = (colon < 0) ? authority : authority.slice(0, colon);
		port = (colon < 0) ? null : authority.slice(colon + 1);
	}
	return { host: host, port: (port == null) ? null : portNumber(port) };
}

/* url::host: returns { ip: bool, name: the checked host name or null } */
function checkHost(h, bracketed) {
	if (h == '')
		fail(_('no host'));
	if (isIp(h)) {
		if (isIpv6(h) != bracketed)
			fail(_('"%s": IPv6 addresses go in brackets, IPv4 ones do not').format(h));
		return { ip: true, name: null };
	}
	if (bracketed)
		fail(_('"%s" in brackets is not an IPv6 address').format(h));
	if (/^[0-9.]*$/.test(h))
		fail(_('"%s" is not a valid IPv4 address').format(h));
	return { ip: false, name: hostName(h) };
}

/* url::upstream; returns { scheme, ip } */
function parseUpstream(s) {
	var i = s.indexOf('://');
	if (i < 0)
		fail(_('"%s" is not scheme://host[:port] (schemes: %s)').format(s, UPSTREAM_SCHEMES.join(', ')));
	var scheme = asciiLower(s.slice(0, i)), rest = s.slice(i + 3);
	if (UPSTREAM_SCHEMES.indexOf(scheme) < 0)
		fail(_('unknown scheme "%s" (known: %s)').format(s.slice(0, i), UPSTREAM_SCHEMES.join(', ')));
	if (/[@?#]/.test(rest))
		fail(_('"%s": user names, queries and fragments are not allowed').format(s));
	var slash = rest.indexOf('/'),
	    authority = (slash < 0) ? rest : rest.slice(0, slash),
	    path = (slash < 0) ? '' : rest.slice(slash);
	var hp = hostPort(authority),
	    host = checkHost(hp.host, authority.charAt(0) == '[');
	if (scheme != 'https' && scheme != 'h3' && path != '' && path != '/')
		fail(_('"%s": a path is only allowed for https:// and h3://').format(s));
	return { scheme: scheme, ip: host.ip, host: hp.host };
}

/* Whether an upstream address can look up other upstreams' names. */
function canResolve(address) {
	try {
		var u = parseUpstream(address);
		return u.ip && PLAIN_SCHEMES.indexOf(u.scheme) >= 0;
	}
	catch (e) {
		if (e instanceof Problem)
			return false;
		throw e;
	}
}

/* url::upstream, then controller::check: a scheme this build forwards to,
 * and a host name only where it can be looked up. `ctx.bootstrap()`: this
 * upstream's bootstrap address; `ctx.otherAddresses()`: the others'. */
function checkUpstream(s, ctx) {
	var u = parseUpstream(s);
	if (SUPPORTED_SCHEMES.indexOf(u.scheme) < 0)
		fail(_('%s upstreams are not supported by this dae build yet (%s are)').format(u.scheme, SUPPORTED_SCHEMES.join(', ')));
	if (!u.ip && !ctx.bootstrap() && !ctx.otherAddresses().some(canResolve))
		fail(_('"%s" is a host name: give its address in Bootstrap address, or add a plain upstream (udp, tcp) with an IP address to look it up').format(u.host));
}

/* SocketAddr::from_str: `IPv4:PORT` or `[IPv6%scope]:PORT` */
function checkListen(s) {
	var ok = false, m = /^([0-9.]+):([0-9]+)$/.exec(s);
	if (m) {
		ok = isIpv4(m[1]) && parseDigits(m[2], 65535) != null;
	}
	else if (s.charAt(0) == '[') {
		var end = readIpv6(s, 1);
		if (end > 0) {
			var tail = /^(?:%([0-9]+))?\]:([0-9]+)$/.exec(s.slice(end));
			ok = !!tail && (tail[1] == null || parseDigits(tail[1], 4294967295) != null) &&
				parseDigits(tail[2], 65535) != null;
		}
	}
	if (!ok)
		fail(_('"%s" is not an address with a port (like 127.0.0.1:5353 or [::1]:5353)').format(s));
}

/* url::base64_decode: standard or URL-safe alphabet, padding optional. */
function base64Bytes(s) {
	var alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
	    out = [], acc = 0, bits = 0;
	s = s.replace(/=+$/, '');
	for (var i = 0; i < s.length; i++) {
		var c = s.charAt(i), v = alphabet.indexOf(c);
		if (c == '+' || c == '-')
			v = 62;
		else if (c == '/' || c == '_')
			v = 63;
		if (v < 0)
			return null;
		acc = ((acc << 6) | v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out.push((acc >> bits) & 0xff);
		}
	}
	return out;
}

/* Bytes as UTF-8 text, or null when they are not UTF-8. */
function utf8Text(bytes) {
	try {
		return decodeURIComponent(bytes.map(function(b) {
			return '%' + (b < 16 ? '0' : '') + b.toString(16);
		}).join(''));
	}
	catch (e) {
		return null;
	}
}

/*
 * dialer::link::parse (src/dialer/link.rs), then controller::check: the
 * share links dae dials. Each proto parser returns { name }: the server's
 * host name, or null when the link gives an IP address (a name is looked
 * up through the first plain upstream at an IP address, so it needs one).
 */
var PARSED_SCHEMES = [ 'socks5', 'socks5h', 'http', 'https', 'ss', 'trojan', 'vless', 'vmess' ];
var SS_METHODS = [ 'aes-128-gcm', 'aes-256-gcm', 'chacha20-ietf-poly1305', 'chacha20-poly1305' ];
var SS_SUPPORTED = 'aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305';
var SS_STREAM = [ 'rc4', 'rc4-md5', 'rc4-md5-6', 'table', 'salsa20', 'chacha20', 'chacha20-ietf', 'xchacha20' ];
var VMESS_SECURITY = [ '', 'auto', 'aes-128-gcm', 'chacha20-poly1305', 'none', 'zero' ];

/* Calls fn(); a Problem it throws comes back as null. */
function orNull(fn) {
	try {
		return fn();
	}
	catch (e) {
		if (e instanceof Problem)
			return null;
		throw e;
	}
}

/* Runs fn(); a Problem it throws gets `prefix` in front of its message. */
function prefixed(prefix, fn) {
	try {
		return fn();
	}
	catch (e) {
		if (e instanceof Problem)
			fail(prefix + e.message);
		throw e;
	}
}

/* link::percent_decode: %XX escapes, UTF-8 once decoded; "+" stays "+". */
function percentDecode(s) {
	if (s.indexOf('%') < 0)
		return s;
	if (/%(?![0-9A-Fa-f]{2})/.test(s))
		fail(_('"%s" has a bad percent escape').format(s));
	try {
		return decodeURIComponent(s);
	}
	catch (e) {
		fail(_('"%s" is not UTF-8 once percent-decoded').format(s));
	}
}

/* Base64 (url::base64_decode) of UTF-8 text, or null. */
function base64Text(s) {
	var bytes = (s == null) ? null : base64Bytes(s);
	return (bytes == null) ? null : utf8Text(bytes);
}

/* `a:b` at the first ":", or null. */
function splitColon(s) {
	var i = (s == null) ? -1 : s.indexOf(':');
	return (i < 0) ? null : [ s.slice(0, i), s.slice(i + 1) ];
}

/* link::server: `host:port` or `[v6]:port`, the port required. */
function linkServer(authority) {
	if (authority.indexOf('/') >= 0)
		fail(_('"%s": a path has no meaning here').format(authority));
	var hp = hostPort(authority),
	    host = checkHost(hp.host, authority.charAt(0) == '[');
	if (hp.port == null)
		fail(_('"%s" has no port').format(authority));
	return host;
}

/* link::url_parts: `[userinfo@]host:port[/][?query]`. */
function urlParts(body) {
	var q = body.indexOf('?'),
	    main = (q < 0) ? body : body.slice(0, q),
	    query = (q < 0) ? '' : body.slice(q + 1),
	    at = main.lastIndexOf('@'),
	    authority = (at < 0) ? main : main.slice(at + 1),
	    params = [];
	if (authority.charAt(authority.length - 1) == '/')
		authority = authority.slice(0, -1);
	var host = linkServer(authority);
	query.split('&').forEach(function(pair) {
		if (pair == '')
			return;
		var eq = pair.indexOf('='),
		    key = (eq < 0) ? pair : pair.slice(0, eq);
		params.push([ key, prefixed(_('parameter "%s": ').format(key), function() {
			return percentDecode((eq < 0) ? '' : pair.slice(eq + 1));
		}) ]);
	});
	return {
		userinfo: (at < 0) ? null : main.slice(0, at),
		name: host.name,
		/* The parameter `key`, decoded; the last one if repeated. */
		get: function(key) {
			for (var i = params.length - 1; i >= 0; i--)
				if (params[i][0] == key)
					return params[i][1];
			return null;
		}
	};
}

/* link::flag: 1/true or 0/false/empty. */
function linkFlag(name, v) {
	if ([ '1', 'true', '0', 'false', '' ].indexOf(asciiLower(v)) < 0)
		fail(_('%s "%s" is not 0 or 1').format(name, v));
}

/* link::server_name: an IP address or a DNS name. */
function serverName(name) {
	if (!isIp(name))
		prefixed(_('TLS server name: '), function() { hostName(name); });
}

/* link::tls_from_query */
function tlsFromQuery(p, nameKeys) {
	var name = nameKeys.map(function(k) { return p.get(k); }).filter(function(v) { return v; })[0];
	if (name != null)
		serverName(name);
	[ 'allowInsecure', 'insecure' ].forEach(function(k) {
		if (p.get(k) != null)
			linkFlag(k, p.get(k));
	});
}

/* link::only_tcp: the plain TCP transport, no camouflage header. */
function onlyTcp(net, header) {
	if (net != null && [ '', 'tcp', 'raw' ].indexOf(net) < 0)
		fail(_('transport "%s" is not supported (only tcp)').format(net));
	if (header != null && [ '', 'none' ].indexOf(header) < 0)
		fail(_('tcp header type "%s" (camouflage) is not supported (only none)').format(header));
}

/* link::user_password: `user:password` (percent-encoded), or base64 of it. */
function userPassword(userinfo) {
	var up = splitColon(userinfo);
	if (up)
		up = [ percentDecode(up[0]), percentDecode(up[1]) ];
	else
		up = splitColon(base64Text(orNull(function() { return percentDecode(userinfo); })));
	if (!up)
		fail(_('"%s" is neither user:password nor base64 of it').format(userinfo));
	if (up[0] == '')
		fail(_('an empty user name'));
	return { user: up[0], password: up[1] };
}

function linkSocks5(body) {
	var p = urlParts(body);
	if (p.userinfo != null) {
		var a = userPassword(p.userinfo);
		if (utf8Length(a.user) > 255 || a.password == '' || utf8Length(a.password) > 255)
			fail(_('the user name and password must each be 1 to 255 bytes'));
	}
	return p;
}

function linkHttp(body, tls) {
	var p = urlParts(body);
	if (p.userinfo != null)
		userPassword(p.userinfo);
	if (tls)
		tlsFromQuery(p, [ 'sni', 'peer' ]);
	return p;
}

/* link::ss_method: the AEAD ciphers only. */
function ssConfig(method, password) {
	var lower = asciiLower(method);
	if (SS_METHODS.indexOf(lower) < 0) {
		if (lower.indexOf('2022-blake3-') == 0)
			fail(_('method "%s" (Shadowsocks 2022) is not supported (supported: %s)').format(method, SS_SUPPORTED));
		if (/-(cfb|cfb1|cfb8|ctr|ofb)$/.test(lower) || SS_STREAM.indexOf(lower) >= 0)
			fail(_('stream cipher "%s" is not supported (insecure; supported: %s)').format(method, SS_SUPPORTED));
		fail(_('unknown method "%s" (supported: %s)').format(method, SS_SUPPORTED));
	}
	if (password == '')
		fail(_('an empty password'));
}

/* `ss://BASE64(method:password@host:port)` */
function linkSsLegacy(encoded) {
	var text = base64Text(encoded);
	if (text == null)
		fail(_('the link is neither SIP002 (userinfo@host:port) nor base64'));
	var at = text.lastIndexOf('@'),
	    mp = (at < 0) ? null : splitColon(text.slice(0, at));
	if (!mp)
		fail(_('"%s" (from base64) is not method:password@host:port').format(text));
	ssConfig(mp[0], mp[1]);
	return linkServer(text.slice(at + 1));
}

function linkSs(body) {
	var q = body.indexOf('?');
	if ((q < 0 ? body : body.slice(0, q)).indexOf('@') < 0)
		return linkSsLegacy(q < 0 ? body : body.slice(0, q));
	var p = urlParts(body),
	    userinfo = p.userinfo || '',
	    mp = splitColon(userinfo);
	if (mp) {
		mp = [ percentDecode(mp[0]), percentDecode(mp[1]) ];
	}
	else {
		var text = base64Text(orNull(function() { return percentDecode(userinfo); }));
		if (text == null)
			fail(_('"%s" is neither base64 of method:password nor method:password').format(userinfo));
		mp = splitColon(text);
		if (!mp)
			fail(_('"%s" (from base64) is not method:password').format(text));
	}
	ssConfig(mp[0], mp[1]);
	var plugin = p.get('plugin');
	if (plugin)
		fail(_('plugins (obfs, v2ray-plugin) are not supported (this link needs "%s")').format(plugin.split(';')[0]));
	return p;
}

function linkTrojan(body) {
	var p = urlParts(body);
	if (p.userinfo == null)
		fail(_('no password (trojan://password@host:port)'));
	if (percentDecode(p.userinfo) == '')
		fail(_('an empty password'));
	onlyTcp(p.get('type'), p.get('headerType'));
	var security = p.get('security');
	if (security != null && security != '' && security != 'tls')
		fail(_('security "%s" is not supported (trojan runs over tls)').format(security));
	tlsFromQuery(p, [ 'sni', 'peer' ]);
	return p;
}

/* link::parse_uuid: xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex. */
function isUuid(id) {
	return /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(id);
}

function linkVless(body) {
	var p = urlParts(body);
	if (p.userinfo == null)
		fail(_('no UUID (vless://uuid@host:port)'));
	var id = percentDecode(p.userinfo);
	if (!isUuid(id))
		fail(_('"%s" is not a UUID').format(id));
	var encryption = p.get('encryption'), flow = p.get('flow'), security = p.get('security');
	if (encryption != null && encryption != '' && encryption != 'none')
		fail(_('encryption "%s" is not supported (only none)').format(encryption));
	if (flow)
		fail(_('flow "%s" (XTLS) is not supported (leave flow empty)').format(flow));
	onlyTcp(p.get('type'), p.get('headerType'));
	if (security == 'tls')
		tlsFromQuery(p, [ 'sni', 'peer' ]);
	else if (security == 'reality')
		fail(_('security "reality" (REALITY) is not supported (only tls or none)'));
	else if (security != null && security != '' && security != 'none')
		fail(_('security "%s" is not supported (only tls or none)').format(security));
	return p;
}

/* A number of the vmess JSON, as the text serde_json gives it. */
function JsonNumber(text) {
	this.text = text;
}

/* Whether the digits `a` are at most the digits `max`. */
function notAbove(a, max) {
	return a.length < max.length || (a.length == max.length && a <= max);
}

/* serde_json's text of a float (shortest digits; 1e+16, 1e-7, 0.0001, 100.0). */
function floatText(x) {
	if (x == 0)
		return (1 / x < 0) ? '-0.0' : '0.0';
	var m = /^(-?)([0-9])(?:\.([0-9]+))?e([+-][0-9]+)$/.exec(x.toExponential()),
	    digits = m[2] + (m[3] || ''), n = digits.length, kk = +m[4] + 1, out;
	if (kk >= n && kk <= 16)
		out = digits + '0'.repeat(kk - n) + '.0';
	else if (kk > 0 && kk <= 16)
		out = digits.slice(0, kk) + '.' + digits.slice(kk);
	else if (kk > -5 && kk <= 0)
		out = '0.' + '0'.repeat(-kk) + digits;
	else
		out = digits.charAt(0) + (n > 1 ? '.' + digits.slice(1) : '') + 'e' + (kk > 1 ? '+' : '-') + Math.abs(kk - 1);
	return m[1] + out;
}

/*
 * JSON as serde_json reads it into a Value: RFC 8259, at most 127 arrays
 * and objects deep, no lone surrogates in strings. Objects have no
 * prototype; numbers are JsonNumbers. Undefined when it is not JSON.
 */
function parseJson(s) {
	var pos = 0, NOT_JSON = {};
	var ESCAPES = { '"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t' };

	function bad() {
		throw NOT_JSON;
	}

	function ws() {
		while (pos < s.length && ' \t\n\r'.indexOf(s.charAt(pos)) >= 0)
			pos++;
	}

	function hex4() {
		var h = s.substr(pos, 4);
		if (!/^[0-9a-fA-F]{4}$/.test(h))
			bad();
		pos += 4;
		return parseInt(h, 16);
	}

	function string() {
		var out = '';
		pos++;
		for (;;) {
			if (pos >= s.length)
				bad();
			var c = s.charAt(pos++);
			if (c == '"')
				return out;
			if (c.charCodeAt(0) < 0x20)
				bad();
			if (c != '\\') {
				out += c;
				continue;
			}
			c = s.charAt(pos++);
			if (Object.prototype.hasOwnProperty.call(ESCAPES, c)) {
				out += ESCAPES[c];
				continue;
			}
			if (c != 'u')
				bad();
			var u = hex4();
			if (u >= 0xdc00 && u <= 0xdfff)
				bad();
			if (u >= 0xd800 && u <= 0xdbff) {
				if (s.substr(pos, 2) != '\\u')
					bad();
				pos += 2;
				var low = hex4();
				if (low < 0xdc00 || low > 0xdfff)
					bad();
				out += String.fromCharCode(u, low);
				continue;
			}
			out += String.fromCharCode(u);
		}
	}

	function number() {
		var m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(s.slice(pos));
		if (!m)
			bad();
		pos += m[0].length;
		var t = m[0], neg = t.charAt(0) == '-', digits = neg ? t.slice(1) : t;
		if (m[1] == null && m[2] == null) {
			if (!neg && notAbove(digits, '18446744073709551615'))
				return new JsonNumber(digits);
			if (neg && digits != '0' && notAbove(digits, '9223372036854775808'))
				return new JsonNumber(t);
		}
		var x = Number(t);
		if (!isFinite(x))
			bad();
		return new JsonNumber(floatText(x));
	}

	function value(depth) {
		ws();
		var c = s.charAt(pos), words = { 't': [ 'true', true ], 'f': [ 'false', false ], 'n': [ 'null', null ] };
		if (c == '"')
			return string();
		if (Object.prototype.hasOwnProperty.call(words, c)) {
			if (s.substr(pos, words[c][0].length) != words[c][0])
				bad();
			pos += words[c][0].length;
			return words[c][1];
		}
		if (c != '{' && c != '[')
			return number();
		if (depth >= 127)
			bad();
		var object = (c == '{'), close = object ? '}' : ']', out = object ? Object.create(null) : [];
		pos++;
		ws();
		if (s.charAt(pos) == close) {
			pos++;
			return out;
		}
		for (;;) {
			if (object) {
				ws();
				if (s.charAt(pos) != '"')
					bad();
				var key = string();
				ws();
				if (s.charAt(pos++) != ':')
					bad();
				out[key] = value(depth + 1);
			}
			else {
				out.push(value(depth + 1));
			}
			ws();
			c = s.charAt(pos++);
			if (c == close)
				return out;
			if (c != ',')
				bad();
		}
	}

	try {
		var v = value(0);
		ws();
		return (pos == s.length) ? v : undefined;
	}
	catch (e) {
		if (e === NOT_JSON)
			return undefined;
		throw e;
	}
}

/* link::json_text: a field of the vmess JSON as text (numbers and booleans too), or null. */
function jsonText(v, field) {
	var x = Object.prototype.hasOwnProperty.call(v, field) ? v[field] : null;
	if (x === null)
		return null;
	if (typeof(x) == 'string')
		return x.replace(RE_TRIM, '');
	if (x instanceof JsonNumber)
		return x.text;
	if (typeof(x) == 'boolean')
		return x ? '1' : '0';
	fail(_('"%s" is not a string').format(field));
}

/* `vmess://BASE64(JSON)`, the v2rayN format. */
function linkVmess(body) {
	var bytes = base64Bytes(body.replace(/\/+$/, ''));
	if (bytes == null)
		fail(_('the link is not base64 (vmess://BASE64(JSON), the v2rayN format)'));
	var text = utf8Text(bytes),
	    v = (text == null) ? undefined : parseJson(text);
	if (v === undefined)
		fail(_('the link does not hold JSON'));
	if (v === null || typeof(v) != 'object' || Array.isArray(v) || v instanceof JsonNumber)
		fail(_('the link\'s JSON is not an object'));

	var add = jsonText(v, 'add');
	if (!add)
		fail(_('no "add" (the server\'s address)'));
	var bare = (add.length >= 2 && add.charAt(0) == '[' && add.charAt(add.length - 1) == ']') ? add.slice(1, -1) : add,
	    name = isIp(bare) ? null : prefixed('"add": ', function() { return checkHost(bare, false).name; });
	var port = jsonText(v, 'port');
	if (port == null)
		fail(_('no "port"'));
	prefixed('"port": ', function() { portNumber(port); });
	var id = jsonText(v, 'id');
	if (id == null)
		fail(_('no "id" (the user\'s UUID)'));
	if (!isUuid(id))
		fail(_('"id" "%s" is not a UUID').format(id));
	var aid = jsonText(v, 'aid');
	if (aid != null && aid != '' && aid != '0')
		fail(_('alterId %s (legacy VMess) is not supported: use AEAD (alterId 0)').format(aid));
	var scy = jsonText(v, 'scy');
	if (scy != null && VMESS_SECURITY.indexOf(scy) < 0)
		fail(_('security "scy" "%s" is unknown (auto, aes-128-gcm, chacha20-poly1305, none, zero)').format(scy));
	onlyTcp(jsonText(v, 'net'), jsonText(v, 'type'));
	var tls = jsonText(v, 'tls');
	if (tls == 'tls') {
		var sni = jsonText(v, 'sni'), host = jsonText(v, 'host');
		if (sni || host)
			serverName(sni || host);
		[ 'allowInsecure', 'skip-cert-verify' ].forEach(function(k) {
			var f = jsonText(v, k);
			if (f != null)
				linkFlag(k, f);
		});
	}
	else if (tls != null && tls != '' && tls != 'none') {
		fail(_('tls "%s" is not supported (only tls or none)').format(tls));
	}
	return { name: name };
}

/* link::parse, then controller::check: a link dae can dial. `upstreams`:
 * the addresses of the config's upstreams, which must include one that can
 * look up a server given by host name (canResolve). */
function checkShareLink(link, upstreams) {
	var i = link.indexOf('://');
	if (i < 0)
		fail(_('not a share link (schemes: %s)').format(PARSED_SCHEMES.join(', ')));
	var scheme = link.slice(0, i), rest = link.slice(i + 3),
	    body = rest.split('#')[0];
	if (PARSED_SCHEMES.indexOf(scheme) < 0)
		fail(_('unknown scheme "%s" (known: %s)').format(scheme, PARSED_SCHEMES.join(', ')));
	var server = prefixed(scheme + ': ', function() {
		switch (scheme) {
		case 'socks5':
		case 'socks5h': return linkSocks5(body);
		case 'http': return linkHttp(body, false);
		case 'https': return linkHttp(body, true);
		case 'ss': return linkSs(body);
		case 'trojan': return linkTrojan(body);
		case 'vless': return linkVless(body);
		default: return linkVmess(body);
		}
	});
	if (server.name != null && !upstreams.some(canResolve))
		fail(_('the server "%s" is a host name: put its IP address in the link, or define a plain upstream (udp, tcp) with an IP address to look it up').format(server.name));
}

/* config::check::authority: `host[:port]` or `[host][:port]`. */
function checkAuthority(a) {
	if (a.charAt(0) == '[') {
		var close = a.indexOf(']');
		if (close < 0)
			fail(_('"%s": "[" without "]"').format(a));
		var after = a.slice(close + 1);
		if (after.charAt(0) == ':')
			portNumber(after.slice(1));
		else if (after != '')
			fail(_('"%s": text after "]"').format(a));
		return a.slice(1, close);
	}
	var colon = a.lastIndexOf(':');
	if (colon >= 0 && a.slice(0, colon).indexOf(':') < 0) {
		portNumber(a.slice(colon + 1));
		return a.slice(0, colon);
	}
	return a;
}

/* config::check::host_and_addresses: an IP host, or a name and its addresses. */
function checkTargetHost(host, addresses) {
	addresses.forEach(function(a) {
		if (!isIp(a.replace(RE_TRIM, '')))
			fail(_('"%s" is not an IP address').format(a));
	});
	if (isIp(host))
		return;
	var name = hostName(host);
	if (addresses.length == 0)
		fail(_('give the addresses of "%s" after it (",IP,IP"): checks never look names up').format(name));
}

/* config::check::tcp_check_url: `http://HOST[:PORT][/PATH],IP,...` */
function checkTcpCheckUrl(v) {
	var parts = v.split(','), url = parts[0].replace(RE_TRIM, '');
	if (url.slice(0, 7) != 'http://')
		fail(_('"%s" is not an http:// URL').format(url));
	var after = url.slice(7), slash = after.indexOf('/'),
	    path = (slash < 0) ? '/' : after.slice(slash);
	for (var i = 0; i < path.length; i++) {
		var c = path.charCodeAt(i);
		if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || RE_WS.test(path.charAt(i)))
			fail(_('the path "%s" holds spaces or control characters').format(path));
	}
	checkTargetHost(checkAuthority((slash < 0) ? after : after.slice(0, slash)), parts.slice(1));
}

/* config::check::udp_check_dns: `HOST[:PORT],IP,...` */
function checkUdpCheckDns(v) {
	var parts = v.split(',');
	checkTargetHost(checkAuthority(parts[0].replace(RE_TRIM, '')), parts.slice(1));
}

/* uci::fixed_ttl: NAME:SECONDS */
function checkFixedTtl(v) {
	var i = v.lastIndexOf(':');
	if (i < 0)
		fail(_('"%s" is not NAME:SECONDS').format(v));
	hostName(v.slice(0, i));
	if (parseUnsigned(v.slice(i + 1), 604800) == null)
		fail(_('"%s": "%s" is not a number of seconds from 0 to 604800').format(v, v.slice(i + 1)));
}

/*
 * Rule syntax (config::rule): `cond && !cond -> target`, each condition a
 * call `name(arg, key: value, 'quoted')`.
 */
function splitTop(text, sep) {
	var parts = [], depth = 0, quote = null, start = 0, i = 0;
	while (i < text.length) {
		var c = text.charAt(i);
		if (quote != null) {
			if (c == quote)
				quote = null;
		}
		else if (c == '\'' || c == '"') {
			quote = c;
		}
		else if (c == '(') {
			depth++;
		}
		else if (c == ')') {
			if (--depth < 0)
				fail(_('unmatched ")" at column %d').format(i + 1));
		}
		else if (depth == 0 && text.substr(i, sep.length) == sep) {
			parts.push(text.slice(start, i));
			i += sep.length;
			start = i;
			continue;
		}
		i++;
	}
	if (quote != null)
		fail(_('unterminated %s quote').format(quote));
	if (depth != 0)
		fail(_('unbalanced parentheses: a "(" is never closed'));
	parts.push(text.slice(start));
	return parts;
}

function isIdent(s) {
	return /^[A-Za-z_][A-Za-z0-9_]*$/.test(s);
}

function looksLikeIp(s) {
	return isIp(s.split('/')[0]);
}

function unquote(v) {
	v = rtrim(v);
	var q = v.charAt(0);
	if (q == '\'' || q == '"') {
		var inner = v.slice(1);
		if (inner.length < 1 || inner.charAt(inner.length - 1) != q || inner.slice(0, -1).indexOf(q) >= 0)
			fail(_('bad quoting in %s').format(v));
		return inner.slice(0, -1);
	}
	if (/['"]/.test(v))
		fail(_('a quote inside the unquoted value %s').format(v));
	if (/[()]/.test(v))
		fail(_('parentheses inside %s (quote the value)').format(v));
	if (RE_WS.test(v))
		fail(_('spaces inside %s (quote the value)').format(v));
	return v;
}

function parseArg(raw) {
	raw = rtrim(raw);
	if (raw == '')
		fail(_('an empty argument'));
	if (!/^['"]/.test(raw) && !looksLikeIp(raw)) {
		var colon = raw.indexOf(':');
		if (colon >= 0) {
			var k = rtrim(raw.slice(0, colon));
			if (isIdent(k)) {
				var value = unquote(raw.slice(colon + 1));
				if (value == '')
					fail(_('no value after "%s:"').format(k));
				return { key: k, value: value };
			}
		}
	}
	return { key: null, value: unquote(raw) };
}

function parseCall(text, needArgs) {
	text = rtrim(text);
	var name = /^[A-Za-z0-9_]*/.exec(text)[0];
	if (name == '' || !isIdent(name))
		fail((text == '') ? _('a condition is missing (nothing between "&&"s, or before "->")')
			: _('expected a function name at "%s"').format(text));
	var rest = rtrim(text.slice(name.length));
	if (rest == '') {
		if (needArgs)
			fail(_('"%s" needs its arguments in parentheses: %s(...)').format(name, name));
		return { name: name, args: [] };
	}
	if (rest.length < 2 || rest.charAt(0) != '(' || rest.charAt(rest.length - 1) != ')')
		fail(_('expected "%s(...)", found "%s"').format(name, text));
	var inner = rest.slice(1, -1);
	if (rtrim(inner) == '')
		fail(_('"%s()" has no arguments').format(name));
	var args = splitTop(inner, ',').map(function(a) {
		try {
			return parseArg(a);
		}
		catch (e) {
			if (e instanceof Problem)
				fail(_('in %s(...): %s').format(name, e.message));
			throw e;
		}
	});
	return { name: name, args: args };
}

function parseRule(text) {
	var halves = splitTop(text, '->');
	if (halves.length == 1)
		fail(_('missing "-> target"'));
	if (halves.length > 2)
		fail(_('more than one "->"'));
	if (splitTop(halves[0], '||').length > 1)
		fail(_('"||" is not supported: write one rule per alternative'));
	var conditions = splitTop(halves[0], '&&').map(function(part) {
		part = rtrim(part);
		var negated = part.charAt(0) == '!',
		    call = parseCall(negated ? part.slice(1) : part, true);
		return { negated: negated, fn: call.name, args: call.args };
	});
	var target = rtrim(halves[1]);
	if (target == '')
		fail(_('missing the target after "->"'));
	return { conditions: conditions, target: parseCall(target, false) };
}

/*
 * A syntax check of the regular expressions dae accepts (the regex-lite
 * engine): groups and flags, classes, escapes, repetitions. No look-around,
 * backreferences or Unicode classes.
 */
function checkRegex(p) {
	var i = 0, depth = 0;
	var POSIX = [ 'alnum', 'alpha', 'ascii', 'blank', 'cntrl', 'digit', 'graph', 'lower',
		'print', 'punct', 'space', 'upper', 'word', 'xdigit' ];

	function escape(inClass) {
		i++;
		if (i >= p.length)
			fail(_('incomplete escape sequence'));
		var c = p.charAt(i);
		i++;
		if (/[0-9]/.test(c))
			fail(_('backreferences are not supported'));
		if (c == 'p' || c == 'P')
			fail(_('Unicode character classes are not supported'));
		if (c == 'x' || c == 'u' || c == 'U') {
			var width = { x: 2, u: 4, U: 8 }[c], m;
			if (p.charAt(i) == '{') {
				m = /^\{([0-9a-fA-F]+)\}/.exec(p.slice(i));
				if (!m || parseInt(m[1], 16) > 0x10ffff || (parseInt(m[1], 16) >= 0xd800 && parseInt(m[1], 16) <= 0xdfff))
					fail(_('invalid hexadecimal escape'));
			}
			else {
				m = new RegExp('^[0-9a-fA-F]{' + width + '}').exec(p.slice(i));
				if (!m || (parseInt(m[0], 16) >= 0xd800 && parseInt(m[0], 16) <= 0xdfff) || parseInt(m[0], 16) > 0x10ffff)
					fail(_('invalid hexadecimal escape'));
			}
			i += m[0].length;
			return 'char';
		}
		if ('dswDSW'.indexOf(c) >= 0)
			return 'class';
		if (/[\\.+*?()|[\]{}^$#&\-~]/.test(c) || (c.charCodeAt(0) < 128 && !/[A-Za-z0-9<>]/.test(c)))
			return 'char';
		if ('aftnrv'.indexOf(c) >= 0)
			return 'char';
		if (!inClass && 'AzbB<>'.indexOf(c) >= 0) {
			if (c == 'b' && p.charAt(i) == '{' && /^\{[A-Za-z-]/.test(p.slice(i))) {
				var sw = /^\{(start|end|start-half|end-half)\}/.exec(p.slice(i));
				if (!sw)
					fail(_('unrecognized special word boundary'));
				i += sw[0].length;
			}
			return 'look';
		}
		fail(_('unrecognized escape sequence'));
	}

	function classItem() {
		if (p.charAt(i) == '\\')
			return escape(true);
		i++;
		return 'char';
	}

	function charClass() {
		var dashes = false;
		i++;
		if (p.charAt(i) == '^')
			i++;
		while (p.charAt(i) == '-') {
			dashes = true;
			i++;
		}
		if (!dashes && p.charAt(i) == ']')
			i++;
		for (;;) {
			if (i >= p.length)
				fail(_('unclosed character class'));
			var c = p.charAt(i), next = p.charAt(i + 1);
			if (c == '[') {
				var m = /^\[:(\^)?([a-z]+):\]/.exec(p.slice(i));
				if (m && POSIX.indexOf(m[2]) >= 0) {
					i += m[0].length;
					continue;
				}
				fail(_('nested character classes are not supported'));
			}
			if (c == ']') {
				i++;
				return;
			}
			if ((c == '&' && next == '&') || (c == '-' && next == '-') || (c == '~' && next == '~'))
				fail(_('class set operations are not supported'));
			var startPos = i, first = classItem();
			if (i >= p.length)
				fail(_('unclosed character class'));
			if (p.charAt(i) == '-' && p.charAt(i + 1) != ']' && p.charAt(i + 1) != '-' && i + 1 < p.length) {
				var startChar = (p.charAt(startPos) == '\\') ? null : p.charAt(startPos);
				i++;
				var endPos = i, second = classItem();
				var endChar = (p.charAt(endPos) == '\\') ? null : p.charAt(endPos);
				if (first != 'char' || second != 'char')
					fail(_('invalid range in character class'));
				if (startChar != null && endChar != null && startChar > endChar)
					fail(_('invalid range in character class'));
			}
		}
	}

	function flags() {
		var seen = {}, negate = false, last = '', count = 0;
		while (i < p.length && p.charAt(i) != ':' && p.charAt(i) != ')') {
			var c = p.charAt(i);
			if (c == '-') {
				if (negate)
					fail(_('bad inline flags'));
				negate = true;
			}
			else if ('imsURx'.indexOf(c) < 0 || seen[c]) {
				fail(_('bad inline flags'));
			}
			seen[c] = true;
			last = c;
			count++;
			i++;
		}
		if (i >= p.length || last == '-')
			fail(_('bad inline flags'));
		return count;
	}

	function sequence() {
		var haveItem = false;
		while (i < p.length) {
			var c = p.charAt(i);
			if (c == ')') {
				if (depth == 0)
					fail(_('found ")" without a matching "("'));
				return;
			}
			if (c == '|') {
				haveItem = false;
				i++;
			}
			else if (c == '(') {
				i++;
				if (/^\?(=|!|<=|<!)/.test(p.slice(i)))
					fail(_('look-around is not supported'));
				var named = /^\?P?<([A-Za-z_][A-Za-z0-9_.[\]]*)>/.exec(p.slice(i));
				var isFlags = false;
				if (named) {
					i += named[0].length;
				}
				else if (/^\?P?</.test(p.slice(i))) {
					fail(_('invalid group name'));
				}
				else if (p.charAt(i) == '?') {
					i++;
					var n = flags();
					if (p.charAt(i) == ')') {
						if (n == 0)
							fail(_('bad inline flags'));
						isFlags = true;
					}
					else {
						i++;
					}
				}
				if (!isFlags) {
					depth++;
					sequence();
					depth--;
				}
				if (p.charAt(i) != ')')
					fail(_('found "(" without a closing ")"'));
				i++;
				haveItem = haveItem || !isFlags;
			}
			else if (c == '[') {
				charClass();
				haveItem = true;
			}
			else if (c == '?' || c == '*' || c == '+') {
				if (!haveItem)
					fail(_('a repetition operator needs something to repeat'));
				i++;
				if (p.charAt(i) == '?')
					i++;
			}
			else if (c == '{') {
				if (!haveItem)
					fail(_('a repetition operator needs something to repeat'));
				var rep = /^\{[ ]*([0-9]+)?[ ]*(,[ ]*([0-9]+)?[ ]*)?\}/.exec(p.slice(i));
				if (!rep || rep[1] == null || parseUnsigned(rep[1], 4294967295) == null ||
				    (rep[3] != null && parseUnsigned(rep[3], 4294967295) == null))
					fail(_('bad counted repetition'));
				if (rep[3] != null && +rep[1] > +rep[3])
					fail(_('bad counted repetition'));
				i += rep[0].length;
				if (p.charAt(i) == '?')
					i++;
			}
			else if (c == '\\') {
				escape(false);
				haveItem = true;
			}
			else {
				i++;
				haveItem = true;
			}
		}
	}

	sequence();
}

/*
 * Rule sets: what `dae geodata --json` lists for the saved geodata_dir
 * ({ dir, files: [ { file, path, prefix, kind, categories, error } ] });
 * null until loadGeodata() has run or when it could not be had, and then a
 * rule set is checked for its form only.
 */
var GEODATA = null;

/* geodata::Loader::wanted: `geosite:CAT[@attr...]`, `geoip:CAT` or
 * `ext:FILE:CAT[@attr...]` as { file, category, attrs }. */
function ruleSetSpec(key, value) {
	var file = key + '.dat', spec = value;
	if (key == 'ext') {
		var i = value.lastIndexOf(':');
		if (i < 0)
			fail(_('"ext:%s": write ext:FILE:CATEGORY, e.g. ext:geosite.dat:cn').format(value));
		file = value.slice(0, i);
		spec = value.slice(i + 1);
		if (file == '')
			fail(_('"ext:%s": the file name is empty').format(value));
	}
	var parts = spec.split('@');
	if (parts[0] == '')
		fail(_('"%s:%s": no category name').format(key, value));
	if (parts.slice(1).indexOf('') >= 0)
		fail(_('"%s:%s": an empty attribute after "@"').format(key, value));
	return { file: file, category: asciiLower(parts[0]), attrs: parts.slice(1) };
}

/* geodata::Loader::site and ::ip, as far as the listing tells: the file
 * is there, readable, of the `kind` asked (geosite or geoip) and holds the
 * category. A file in another directory is left to dae validate. */
function ruleSet(a, kind) {
	var s = ruleSetSpec(a.key, a.value), text = a.key + ':' + a.value;
	if (kind == 'geoip' && s.attrs.length)
		fail(_('"%s": geoip categories take no "@" attributes').format(text));
	if (GEODATA == null || s.file.indexOf('/') >= 0)
		return;
	var f = GEODATA.files.filter(function(x) { return x.file == s.file; })[0];
	if (!f)
		fail(_('"%s": there is no %s in %s').format(text, s.file, GEODATA.dir));
	if (f.error)
		fail(_('"%s": %s: %s').format(text, s.file, f.error));
	if (f.kind && f.kind != kind)
		fail(_('"%s": %s is a %s file').format(text, s.file, f.kind));
	if (!(f.categories || []).some(function(c) { return c.name == s.category; }))
		fail(_('"%s": %s has no category "%s"').format(text, s.file, s.category));
}

/* An argument of ip(), dip() or sip(): an address, a network or a geoip set. */
function ipArg(a, fn) {
	if (a.key == 'geoip' || a.key == 'ext')
		return ruleSet(a, 'geoip');
	cidr(plain(a, fn));
}

/* Category names a rule can hold unquoted (what real files have). */
var RE_SET_NAME = /^[A-Za-z0-9._!-]+$/;

/*
 * What the installed rule sets give the functions `fns` of a rule: e.g.
 * `domain(geosite:cn)`, `domain(geosite:cn@ads)`, `dip(geoip:private)`,
 * `domain(ext:my.dat:work)`, in file order. Files with errors give none.
 */
function ruleSetChoices(fns) {
	var out = [];
	((GEODATA && GEODATA.files) || []).forEach(function(f) {
		if (f.error || !f.kind || !RE_SET_NAME.test(f.file))
			return;
		fns.filter(function(fn) {
			return (f.kind == 'geoip') == (fn == 'ip' || fn == 'dip' || fn == 'sip');
		}).forEach(function(fn) {
			(f.categories || []).forEach(function(c) {
				if (!RE_SET_NAME.test(c.name))
					return;
				out.push(fn + '(' + f.prefix + c.name + ')');
				(c.attributes || []).forEach(function(at) {
					if (RE_SET_NAME.test(at))
						out.push(fn + '(' + f.prefix + c.name + '@' + at + ')');
				});
			});
		});
	});
	return out;
}

function domainPatterns(args) {
	args.forEach(function(a) {
		switch (a.key) {
		case null:
		case 'suffix':
		case 'full':
			hostName(a.value);
			break;
		case 'keyword':
			break;
		case 'regex':
			try {
				checkRegex(a.value);
			}
			catch (e) {
				if (e instanceof Problem)
					fail(_('bad regex "%s": %s').format(a.value, e.message));
				throw e;
			}
			break;
		case 'geosite':
		case 'ext':
			ruleSet(a, 'geosite');
			break;
		default:
			fail(_('unknown key "%s:" (allowed: suffix, full, keyword, regex, geosite, ext)').format(a.key));
		}
	});
}

/* An argument that takes no `key:` */
function plain(a, fn) {
	if (a.key == null)
		return a.value;
	if (a.key == 'geoip' || a.key == 'geosite' || a.key == 'ext')
		fail(_('%s(%s:%s): rule sets are taken by qname(), domain() (geosite:, ext:) and ip(), dip(), sip() (geoip:, ext:)').format(fn, a.key, a.value));
	fail(_('%s() takes no "%s:" key').format(fn, a.key));
}

function qtype(a) {
	var v = plain(a, 'qtype');
	if (parseUnsigned(v, 65535) == null && RECORD_TYPES.indexOf(asciiUpper(v)) < 0)
		fail(_('"%s" is not a record type (a name like aaaa or mx, or a number)').format(v));
}

function cidr(v) {
	var i = v.indexOf('/'),
	    addr = (i < 0) ? v : v.slice(0, i);
	if (!isIp(addr))
		fail(_('"%s" is not an IP address or network (like 192.0.2.0/24)').format(v));
	var max = isIpv4(addr) ? 32 : 128;
	if (i >= 0 && parseUnsigned(v.slice(i + 1), max) == null)
		fail(_('"%s": the prefix length must be 0 to %d').format(v, max));
}

function known(names) {
	return names.length ? _(' (defined: %s)').format(names.join(', ')) : _(' (none are defined)');
}

/* uci::dns_target */
function dnsTarget(v, response, upstreams) {
	if (v == 'reject' || (!response && v == 'asis') || (response && v == 'accept'))
		return;
	if (response && v == 'asis')
		fail(_('"asis" is for request rules; a response can be accepted, rejected or asked again at an upstream'));
	if (!response && v == 'accept')
		fail(_('"accept" is for response rules; a request goes to an upstream, "asis" or "reject"'));
	if (upstreams.indexOf(v) < 0)
		fail(_('no upstream is named "%s"').format(v) + known(upstreams));
}

/* uci::dns_rule */
function checkDnsRule(text, response, upstreams) {
	var r = parseRule(text);
	r.conditions.forEach(function(c) {
		if (c.fn == 'qname') {
			domainPatterns(c.args);
		}
		else if (c.fn == 'qtype') {
			c.args.forEach(qtype);
		}
		else if (c.fn == 'upstream' && response) {
			c.args.forEach(function(a) {
				var v = plain(a, 'upstream');
				if (v != 'asis' && upstreams.indexOf(v) < 0)
					fail(_('upstream(%s): no upstream is named "%s"').format(v, v) + known(upstreams));
			});
		}
		else if (c.fn == 'ip' && response) {
			c.args.forEach(function(a) { ipArg(a, 'ip'); });
		}
		else {
			fail(_('"%s" cannot be used in this rule (allowed: %s)').format(c.fn,
				(response ? RESPONSE_FUNCTIONS : REQUEST_FUNCTIONS).join(', ')));
		}
	});
	if (r.target.args.length)
		fail(_('the target "%s" takes no arguments').format(r.target.name));
	dnsTarget(r.target.name, response, upstreams);
}

function portRange(v) {
	var i = v.indexOf('-');
	if (i < 0)
		return portNumber(v);
	var a = portNumber(v.slice(0, i)), b = portNumber(v.slice(i + 1));
	if (a > b)
		fail(_('"%s": the range runs backwards').format(v));
}

/* uci::routing_args */
function routingArgs(c) {
	c.args.forEach(function(a) {
		var v;
		switch (c.fn) {
		case 'dip':
		case 'sip':
			ipArg(a, c.fn);
			break;
		case 'dport':
		case 'sport':
			portRange(plain(a, c.fn));
			break;
		case 'l4proto':
		case 'ipversion':
			v = plain(a, c.fn);
			if ((c.fn == 'l4proto') ? (v != 'tcp' && v != 'udp') : (v != '4' && v != '6'))
				fail(_('%s(%s): not an allowed value').format(c.fn, a.value));
			break;
		case 'domain':
			domainPatterns([ a ]);
			break;
		case 'mac':
			v = (a.key != null) ? a.key + ':' + a.value : a.value;
			if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v))
				fail(_('mac(%s): not a MAC address like 02:00:5e:00:53:01').format(v));
			break;
		case 'pname':
			plain(a, c.fn);
			break;
		case 'dscp':
			v = parseUnsigned(plain(a, c.fn), 255);
			if (v == null || v > 63)
				fail(_('dscp(%s): not a number from 0 to 63').format(a.value));
			break;
		default:
			fail(_('"%s" is not a routing function (allowed: %s)').format(c.fn, ROUTING_FUNCTIONS.join(', ')));
		}
	});
}

/* uci::routing_target */
function routingTarget(name, args, groups) {
	if (ROUTING_RESERVED.indexOf(name) < 0 && groups.indexOf(name) < 0)
		fail(_('no group is named "%s" (targets: direct, block, must_direct or a group%s)').format(name,
			groups.length ? ': ' + groups.join(', ') : ''));
	if (args.length > 1 || (args.length == 1 && (args[0].key != null || args[0].value != 'must')))
		fail(_('the target "%s" takes no arguments but "must"').format(name));
}

function checkRoutingRule(text, groups) {
	var r = parseRule(text);
	r.conditions.forEach(routingArgs);
	routingTarget(r.target.name, r.target.args, groups);
}

/* config::subscription::url */
function checkSubscriptionUrl(v) {
	var i = v.indexOf('://');
	if (i < 0)
		fail(_('"%s" is not an http:// or https:// URL').format(v));
	var scheme = asciiLower(v.slice(0, i)), rest = v.slice(i + 3);
	if (scheme != 'http' && scheme != 'https')
		fail(_('scheme "%s" is not http or https').format(scheme));
	if (rest.indexOf('#') >= 0)
		rest = rest.slice(0, rest.indexOf('#'));
	var cut = rest.search(/[/?]/);
	if (cut < 0)
		cut = rest.length;
	var authority = rest.slice(0, cut), path = rest.slice(cut);
	if (authority.indexOf('@') >= 0)
		fail(_('user names and passwords in the URL are not supported'));
	if (path.split('').some(function(c) { return c <= ' ' || (c >= '\x7f' && c <= '\x9f'); }))
		fail(_('the URL has spaces or control characters'));
	var hp = hostPort(authority);
	checkHost(hp.host, authority.charAt(0) == '[');
}

/* config::subscription::interval, within the schema's limits */
function checkInterval(v, spec) {
	var m = /^([0-9]+)([smhd]?)$/.exec(v),
	    n = m ? parseInt(m[1], 10) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]] : null;
	if (n == null || n < spec.min || n > spec.max)
		fail(_('"%s" is not a period from %d s to %d s (seconds, or a number with s, m, h or d, as 12h)').format(v, spec.min, spec.max));
}

/* config::subscription::filter */
function checkNodeFilter(v) {
	if (splitTop(v, '||').length > 1)
		fail(_('"||" is not supported: write one rule per alternative'));
	splitTop(v, '&&').forEach(function(part) {
		part = rtrim(part);
		var negated = part.charAt(0) == '!',
		    call = parseCall(negated ? part.slice(1) : part, true);
		if (call.name == 'subtag')
			return;
		if (call.name != 'name')
			fail(_('unknown function "%s" (known: name, subtag)').format(call.name));
		call.args.forEach(function(a) {
			if (a.key == 'regex') {
				try {
					checkRegex(a.value);
				}
				catch (e) {
					if (e instanceof Problem)
						fail(_('bad regex "%s": %s').format(a.value, e.message));
					throw e;
				}
			}
			else if (a.key != null && a.key != 'keyword')
				fail(_('unknown key "%s:" in name() (allowed: keyword, regex, or a bare name)').format(a.key));
		});
	});
}

/* uci::group_policy */
function checkPolicy(v, nodes) {
	if (POLICIES.indexOf(v) >= 0)
		return;
	var m = /^fixed\((.*)\)$/.exec(v), n = m ? parseUnsigned(rtrim(m[1]), Number.MAX_SAFE_INTEGER) : null;
	if (n == null)
		fail(_('"%s" is not a policy (random, fixed(N), min, min_avg10, min_moving_avg)').format(v));
	if (n >= nodes)
		fail(_('fixed(%d): the group has %d node(s), counted from 0').format(n, nodes));
}

/* The addresses of the upstreams, in file order (`value(sid, option)`: an
 * option's current value; the config's by default), empty ones left out;
 * except the upstream `except`. */
function upstreamAddresses(value, except) {
	value = value || function(sid, name) { return uci.get(CONFIG, sid, name); };
	return uci.sections(CONFIG, 'upstream').filter(function(s) {
		return s['.name'] != except;
	}).map(function(s) {
		return value(s['.name'], 'address');
	}).filter(function(a) {
		return typeof(a) == 'string' && a != '';
	});
}

/* The names of the named sections of a type, in file order. */
function names(type) {
	return uci.sections(CONFIG, type).filter(function(s) {
		return !s['.anonymous'];
	}).map(function(s) {
		return s['.name'];
	});
}

function toList(v) {
	if (v == null)
		return [];
	return Array.isArray(v) ? v : [ v ];
}

/* One value of a kind; true, or the message. `ctx`: the option and section. */
function checkValue(kind, v, spec, ctx) {
	var n;
	switch (kind) {
	case 'integer':
		n = parseUnsigned(v, spec.max);
		if (n == null || n < spec.min || n > spec.max)
			fail(_('"%s" is not a whole number from %d to %d').format(v, spec.min, spec.max));
		break;
	case 'port':
		portNumber(v);
		break;
	case 'mark':
		n = /^0[xX]/.test(v) ? (/^\+?[0-9a-fA-F]+$/.test(v.slice(2)) &&
			parseInt(v.slice(2).replace(/^\+/, ''), 16) <= 0xffffffff) : (parseUnsigned(v, 4294967295) != null);
		if (!n)
			fail(_('"%s" is not a 32-bit mark (decimal, or hex like 0x80)').format(v));
		break;
	case 'interface':
		if (utf8Length(v) > 15 || /[/:]/.test(v) || RE_WS.test(v) || v == '.' || v == '..')
			fail(_('"%s" is not an interface name (1 to 15 characters, no "/", ":" or spaces)').format(v));
		break;
	case 'path':
		if (v.charAt(0) != '/')
			fail(_('"%s" is not an absolute path').format(v));
		break;
	case 'listen_address':
		checkListen(v);
		break;
	case 'upstream_address':
		checkUpstream(v, ctx);
		break;
	case 'ip_address':
		if (!isIp(v))
			fail(_('"%s" is not an IPv4 or IPv6 address').format(v));
		break;
	case 'share_link':
		checkShareLink(v, ctx.addresses());
		break;
	case 'check_url':
		checkTcpCheckUrl(v);
		break;
	case 'check_dns':
		checkUdpCheckDns(v);
		break;
	case 'fixed_ttl':
		checkFixedTtl(v);
		break;
	case 'dns_request_rule':
	case 'dns_response_rule':
		checkDnsRule(v, kind == 'dns_response_rule', names('upstream'));
		break;
	case 'dns_request_target':
	case 'dns_response_target':
		dnsTarget(v, kind == 'dns_response_target', names('upstream'));
		break;
	case 'routing_rule':
		checkRoutingRule(v, names('group'));
		break;
	case 'routing_target':
		routingTarget(v, [], names('group'));
		break;
	case 'reference':
		if (names(spec.refers).indexOf(v) < 0)
			fail(_('no %s section is named "%s"').format(spec.refers, v) + known(names(spec.refers)));
		break;
	case 'group_policy':
		checkPolicy(v, ctx.nodes().length);
		break;
	case 'subscription_url':
		checkSubscriptionUrl(v);
		break;
	case 'interval':
		checkInterval(v, spec);
		break;
	case 'node_filter':
		checkNodeFilter(v);
		break;
	default:
		fail(_('unknown kind of value: %s').format(kind));
	}
}

return baseclass.extend({
	CONFIG: CONFIG,
	UPSTREAM_SCHEMES: UPSTREAM_SCHEMES,
	SUPPORTED_SCHEMES: SUPPORTED_SCHEMES,
	PLAIN_SCHEMES: PLAIN_SCHEMES,
	LINK_SCHEMES: LINK_SCHEMES,
	REQUEST_FUNCTIONS: REQUEST_FUNCTIONS,
	RESPONSE_FUNCTIONS: RESPONSE_FUNCTIONS,
	ROUTING_FUNCTIONS: ROUTING_FUNCTIONS,
	REQUEST_RESERVED: REQUEST_RESERVED,
	RESPONSE_RESERVED: RESPONSE_RESERVED,
	ROUTING_RESERVED: ROUTING_RESERVED,
	POLICIES: POLICIES,

	/*
	 * A `validate` function for a form option holding values of `kind` (the
	 * type names of `dae schema --json`). `spec`: { min, max } for integers,
	 * { refers } for references, { required } for options that must be set.
	 * The kind and spec stay on the function for the tests to compare with
	 * the schema.
	 */
	validator: function(kind, spec) {
		spec = spec || {};
		var fn = function(section_id, value) {
			var option = this, values = toList(value);
			if (values.length == 0 || (values.length == 1 && values[0] === ''))
				return spec.required ? _('must be set') : true;
			/* The current value of an option of a section (the form's, else the config's). */
			var current = function(sid, name) {
				var v = (option && option.section && option.section.formvalue)
					? option.section.formvalue(sid, name) : null;
				return (v != null) ? v : uci.get(CONFIG, sid, name);
			};
			var ctx = {
				nodes: function() {
					return toList(current(section_id, 'node'));
				},
				bootstrap: function() {
					return current(section_id, 'bootstrap');
				},
				/* the upstreams' addresses */
				addresses: function() {
					return upstreamAddresses(current, null);
				},
				/* the other upstreams' addresses (for an upstream's own check) */
				otherAddresses: function() {
					return upstreamAddresses(current, section_id);
				}
			};
			for (var i = 0; i < values.length; i++) {
				if (values[i] === '')
					return _('is empty');
				/* dae reads a value with either kind of quote in it, not both. */
				if (bothQuotes(values[i]))
					return _('Use only one kind of quote (\' or ") in a value.');
				try {
					checkValue(kind, values[i], spec, ctx);
				}
				catch (e) {
					if (e instanceof Problem)
						return e.message;
					throw e;
				}
			}
			return true;
		};
		fn.daeKind = kind;
		fn.daeSpec = spec;
		return fn;
	},

	/* Named sections of a type. */
	names: names,

	/*
	 * Reads what `dae geodata --json` lists (the rule sets installed in the
	 * saved geodata_dir) for the rule checks and completions; resolves to
	 * the listing, or null when it cannot be had.
	 */
	loadGeodata: function() {
		return L.resolveDefault(fs.exec('/usr/bin/dae', [ 'geodata', '--json' ]), null).then(function(res) {
			var v = null;
			try {
				v = (res && res.stdout) ? JSON.parse(res.stdout) : null;
			}
			catch (e) {
				v = null;
			}
			GEODATA = (v && Array.isArray(v.files)) ? v : null;
			return GEODATA;
		});
	},

	ruleSetChoices: ruleSetChoices,

	/*
	 * Offers the installed rule sets as completions of a rule list's entry
	 * field (a datalist: the browser's own accessible suggestions): typing
	 * "geosite" or "cn" proposes `domain(geosite:cn)` and the like, and the
	 * owner adds the target. `fns`: the rule functions that take sets.
	 */
	ruleSetPicker: function(option, fns) {
		var render = option.renderWidget;
		option.renderWidget = function(section_id) {
			var node = render.apply(this, arguments),
			    choices = ruleSetChoices(fns),
			    input = (choices.length && node && node.querySelector)
				? node.querySelector('.add-item > input[type="text"]') : null;
			if (!input)
				return node;
			var id = 'dae-rulesets.' + this.option + '.' + section_id;
			input.setAttribute('list', id);
			input.setAttribute('title', _('Installed rule sets are offered as you type, e.g. "geosite" or "cn"; add " -> " and a target.'));
			node.appendChild(E('datalist', { 'id': id }, choices.map(function(c) {
				return E('option', { 'value': c });
			})));
			return node;
		};
	},

	/* The addresses of the config's upstreams (what parseLinks needs). */
	upstreamAddresses: function() {
		return upstreamAddresses(null, null);
	},

	/* What a target field may hold: the reserved words, then the names. */
	targets: function(kind) {
		switch (kind) {
		case 'dns_request_target': return REQUEST_RESERVED.concat(names('upstream'));
		case 'dns_response_target': return RESPONSE_RESERVED.concat(names('upstream'));
		case 'routing_target': return ROUTING_RESERVED.concat(names('group'));
		}
		return [];
	},

	/* Makes sure one section of a single type exists (unsaved until Save). */
	ensureSection: function(type, name) {
		if (uci.sections(CONFIG, type).length == 0)
			uci.add(CONFIG, type, name);
	},

	/* Whether `name` may name a new section of `type`: true, or why not. */
	checkSectionName: function(type, name) {
		if (!/^[A-Za-z0-9_]+$/.test(name || ''))
			return _('A name may hold only letters, digits and "_".');
		if ((RESERVED_NAMES[type] || []).indexOf(name) >= 0)
			return _('"%s" is reserved for rules and cannot name a %s section.').format(name, type);
		var other = uci.get(CONFIG, name);
		if (other != null)
			return _('The name "%s" is already used by a %s section.').format(name, other['.type']);
		return true;
	},

	/* The places (section.option) that refer to the section `name` of `type`. */
	usedBy: function(type, name) {
		var out = [];
		function note(s, opt) {
			var where = s['.name'] + '.' + opt;
			if (out.indexOf(where) < 0)
				out.push(where);
		}
		function rule(text) {
			try {
				return parseRule(text);
			}
			catch (e) {
				return null;
			}
		}
		uci.sections(CONFIG).forEach(function(s) {
			var t = s['.type'];
			if (type == 'upstream' && t == 'dns') {
				[ 'request_fallback', 'response_fallback' ].forEach(function(opt) {
					if (s[opt] == name)
						note(s, opt);
				});
				[ 'request_rule', 'response_rule' ].forEach(function(opt) {
					toList(s[opt]).forEach(function(text) {
						var r = rule(text);
						if (r && (r.target.name == name || r.conditions.some(function(c) {
							return c.fn == 'upstream' && c.args.some(function(a) { return a.value == name; });
						})))
							note(s, opt);
					});
				});
			}
			else if (type == 'node' && t == 'group' && toList(s.node).indexOf(name) >= 0) {
				note(s, 'node');
			}
			else if (type == 'group' && t == 'routing') {
				if (s.fallback == name)
					note(s, 'fallback');
				toList(s.rule).forEach(function(text) {
					var r = rule(text);
					if (r && r.target.name == name)
						note(s, 'rule');
				});
			}
		});
		return out;
	},

	/*
	 * Makes a grid of named sections refuse names `dae validate` would
	 * refuse, and refuse to delete a section that others still refer to.
	 */
	guardSections: function(section, type) {
		var self = this;
		section.handleAdd = function(ev, name) {
			var ok = self.checkSectionName(type, name);
			if (ok !== true) {
				ui.addNotification(null, E('p', {}, [ ok ]), 'error');
				return Promise.resolve();
			}
			return form.GridSection.prototype.handleAdd.call(this, ev, name);
		};
		section.handleRemove = function(section_id, ev) {
			var users = self.usedBy(type, section_id);
			if (users.length) {
				ui.addNotification(null, E('p', {}, [ _('"%s" is still used by %s: change those first.')
					.format(section_id, users.join(', ')) ]), 'warning');
				return Promise.resolve();
			}
			return form.GridSection.prototype.handleRemove.call(this, section_id, ev);
		};
	},

	/* A Flag that reads every spelling dae accepts (1/true/yes/on). */
	flag: function(option) {
		option.cfgvalue = function(section_id) {
			var v = form.Flag.prototype.cfgvalue.apply(this, arguments);
			if (typeof(v) == 'string' && /^(true|yes|on)$/.test(v))
				return '1';
			if (typeof(v) == 'string' && /^(false|no|off)$/.test(v))
				return '0';
			return v;
		};
		return option;
	},

	/* "scheme host:port" of a share link, for the nodes table. */
	linkSummary: function(link) {
		var m = /^([a-z0-9]+):\/\/(.*)$/.exec(link || '');
		if (!m)
			return '-';
		var body = m[2].split('#')[0];
		if (m[1] == 'vmess') {
			try {
				var v = JSON.parse(utf8Text(base64Bytes(body)));
				return 'vmess ' + v.add + ':' + v.port;
			}
			catch (e) {
				return 'vmess';
			}
		}
		body = body.split(/[/?]/)[0];
		if (m[1] == 'ss' && body.indexOf('@') < 0)
			body = utf8Text(base64Bytes(body) || []) || '';
		return m[1] + ' ' + body.slice(body.lastIndexOf('@') + 1);
	},

	/*
	 * Share links pasted several at once (one per line, blank lines and
	 * "#" comments skipped): each checked as dae does, and given a section
	 * name from its "#fragment" (or its scheme) that no section has yet.
	 * `upstreams`: the addresses of the config's upstreams (a server given
	 * by host name needs a plain one at an IP address, as in dae); the
	 * config's when not given.
	 * Returns { nodes: [ { name, link } ], errors: [ { line, link, error } ] }.
	 */
	parseLinks: function(text, taken, upstreams) {
		var used = (taken || []).slice(), nodes = [], errors = [];
		if (upstreams == null)
			upstreams = upstreamAddresses(null, null);
		String(text || '').split(/\r?\n/).forEach(function(line, index) {
			var link = rtrim(line);
			if (link == '' || link.charAt(0) == '#')
				return;
			try {
				if (bothQuotes(link))
					fail(_('Use only one kind of quote (\' or ") in a value.'));
				checkShareLink(link, upstreams);
			}
			catch (e) {
				if (!(e instanceof Problem))
					throw e;
				errors.push({ line: index + 1, link: link, error: e.message });
				return;
			}
			var hash = link.indexOf('#'), label = '';
			if (hash >= 0) {
				try {
					label = decodeURIComponent(link.slice(hash + 1));
				}
				catch (e) {
					label = link.slice(hash + 1);
				}
			}
			var base = label.replace(/[^A-Za-z0-9_]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 32);
			if (base == '')
				base = link.slice(0, link.indexOf(':'));
			if (/^[0-9]/.test(base))
				base = 'node_' + base;
			var name = base;
			for (var n = 2; used.indexOf(name) >= 0; n++)
				name = base + '_' + n;
			used.push(name);
			nodes.push({ name: name, link: link });
		});
		return { nodes: nodes, errors: errors };
	}
});
