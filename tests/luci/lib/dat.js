'use strict';
/*
 * v2ray's dat files written for the LuCI tests (a protobuf encoder of our
 * own: varints, keys, length-delimited fields): `GeoSiteList { repeated
 * GeoSite { country_code = 1; repeated Domain { type = 1; value = 2;
 * repeated Attribute { key = 1; bool_value = 2 } = 3 } = 2 } = 1 }` and
 * `GeoIPList { repeated GeoIP { country_code = 1; repeated CIDR { ip = 1;
 * prefix = 2 } = 2 } = 1 }`. The daemon reads them with its own reader.
 */

function varint(n) {
	const out = [];
	while (n >= 0x80) {
		out.push((n & 0x7f) | 0x80);
		n = Math.floor(n / 128);
	}
	out.push(n);
	return out;
}

function bytes(field, b) {
	return [ ...varint(field << 3 | 2), ...varint(b.length), ...b ];
}

function number(field, n) {
	return [ ...varint(field << 3), ...varint(n) ];
}

const utf8 = s => [ ...Buffer.from(s, 'utf8') ];

const KINDS = { keyword: 0, regex: 1, suffix: 2, full: 3 };

/* categories: [ [ code, [ [ kind, value, [ attrs ] ] ] ] ] */
function geosite(categories) {
	const out = [];
	for (const [ code, domains ] of categories) {
		const entry = bytes(1, utf8(code));
		for (const [ kind, value, attrs ] of domains) {
			const d = [];
			if (KINDS[kind])
				d.push(...number(1, KINDS[kind]));
			d.push(...bytes(2, utf8(value)));
			for (const a of attrs || [])
				d.push(...bytes(3, [ ...bytes(1, utf8(a)), ...number(2, 1) ]));
			entry.push(...bytes(2, d));
		}
		out.push(...bytes(1, entry));
	}
	return Buffer.from(out);
}

/* categories: [ [ code, [ 'a.b.c.d/len' ] ] ] (IPv4 only) */
function geoip(categories) {
	const out = [];
	for (const [ code, nets ] of categories) {
		const entry = bytes(1, utf8(code));
		for (const net of nets) {
			const [ addr, len ] = net.split('/');
			const c = [ ...bytes(1, addr.split('.').map(Number)) ];
			if (+len)
				c.push(...number(2, +len));
			entry.push(...bytes(2, c));
		}
		out.push(...bytes(1, entry));
	}
	return Buffer.from(out);
}

module.exports = { geosite, geoip };
