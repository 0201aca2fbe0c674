'use strict';
/*
 * Values, by schema type, that the browser checks and `dae validate` must
 * judge alike. Good and bad ones, with the edges each check has (signs,
 * leading zeros, limits, brackets, quoting, unsupported features). The
 * fixture they are tried in (lib/dae.js) defines the upstreams dns_a and
 * dns_b, the nodes n1 and n2 and the group g (n1, n2).
 */

const INTEGER = [ '0', '1', '4', '5', '30', '31', '4096', '60000', '60001', '86400', '86401', '604800', '604801',
	'1048576', '1048577', '+5', '-1', '007', 'abc', '1.5', ' 5', '5 ', '0x10', '99999999999999999999999', '+', '' ];

/* Share links: a vmess link of this JSON (v2rayN: base64 of it), and a valid UUID. */
const UUID = '1386f85e-657b-4d6e-9d56-78badb75e1fd';
function vmess(fields) {
	const json = typeof fields == 'string' ? fields : JSON.stringify(Object.assign({ add: '192.0.2.80', port: '443', id: UUID }, fields));
	return 'vmess://' + Buffer.from(json).toString('base64');
}
function b64(text) {
	return Buffer.from(text).toString('base64').replace(/=+$/, '');
}

const RULE_SHAPES = [
	'', '->', 'qname(a)', 'qname(a) ->', 'qname(a -> dns_a', 'qname(a)) -> dns_a', 'qname("a) -> dns_a',
	'(a) -> dns_a', 'qname(a) && -> dns_a', 'qname -> dns_a', 'qname() -> dns_a', 'qname(a,,b) -> dns_a',
	'qname(a) || qtype(a) -> dns_a', 'qname(a) -> dns_a -> dns_b', 'qname(suffix: ) -> dns_a',
	'qname(a b) -> dns_a', '1qname(a) -> dns_a', 'qname(a)x -> dns_a', 'qname("a b") -> dns_a'
];

module.exports = {
	integer: INTEGER,

	port: [ '0', '1', '53', '12345', '65535', '65536', '+53', '-1', 'abc', '053', '4294967296', '' ],

	mark: [ '0', '255', '0x80', '0X80', '0xffffffff', '0x100000000', '4294967295', '4294967296', '0x',
		'0x+80', '0xg', '-1', '+128', '80h', '0b1', '' ],

	interface: [ 'br-lan', 'eth0.1', 'a', 'abcdefghijklmno', 'abcdefghijklmnop', 'a/b', 'a:b', 'a b',
		'.', '..', '...', 'wlan0-1', 'éééé', 'éééééééé', 'a\u3000b', 'a\u00a0b', '' ],

	path: [ '/lib/bpf/dae_tc.o', '/', '/var/run/dae.sock', 'lib/x.o', './x', '~/x', '' ],

	listen_address: [ '127.0.0.1:5353', '0.0.0.0:53', '127.0.0.1', '[::1]:53', '::1:53', '[::1]',
		'127.0.0.1:0', '127.0.0.1:65535', '127.0.0.1:65536', '01.2.3.4:53', '1.2.3.4:053',
		'[fe80::1%2]:53', '[fe80::1%eth0]:53', '[::ffff:1.2.3.4]:53', '256.1.1.1:53', '1.2.3.4:+53',
		'[1:2:3:4:5:6:7:8]:53', '[1:2:3:4:5:6:7::]:53', '[1:2:3:4:5:6:7:8::]:53', '[::1.2.3.4]:53',
		'[1.2.3.4::]:53', '[1:2:3:4:5:6:1.2.3.4]:53', '[::12345]:53', '[:::]:53', '[::]:53',
		'localhost:53', '1.2.3:53', '' ],

	upstream_address: [ 'udp://192.0.2.53:53', 'udp://192.0.2.53', 'UDP://192.0.2.53', 'Tcp+Udp://192.0.2.53',
		'tcp+udp://[2001:db8::53]:5353', 'tcp://[2001:db8::53]', 'udp://2001:db8::53', 'udp://dns.example',
		'tls://192.0.2.1', 'https://192.0.2.1/dns-query', 'https://dns.example', 'h3://192.0.2.1', 'quic://192.0.2.1',
		'dns://192.0.2.1', '192.0.2.1', 'udp://', 'udp://192.0.2.53:0', 'udp://192.0.2.53:+53',
		'udp://192.0.2.53:70000', 'udp://192.0.2.53:', 'udp://user@192.0.2.53', 'udp://192.0.2.53/path',
		'udp://192.0.2.53/', 'udp://999.1.1.1', 'udp://[192.0.2.1]', 'udp://[dns.example]', 'udp://192.0.2.53?x',
		'udp://[::1', 'udp://[::1]x', 'udp://[::1]:53', 'udp://1.2.3', 'udp://a..b', 'udp://bad_-.example',
		'udp://[::ffff:192.0.2.1]', 'udp:/192.0.2.1', 'https://[2001:db8::1]:8443/q', 'tls://dns.example:853',
		'https://dns.example/dns-query', 'TLS://Dns.Example.', 'tls://192.0.2.1/x', 'tcp://dns.example', '' ],

	ip_address: [ '192.0.2.1', '2001:db8::1', '::', '::ffff:192.0.2.1', '[2001:db8::1]', '192.0.2.1/32',
		'192.0.2.256', '01.2.3.4', 'fe80::1%2', 'dns.example', '1.2.3', '' ],

	/* config::link::parse, then controller::check. A server given by host name is
	 * looked up through the fixture's plain upstream at an IP address (dns_a):
	 * views.test.js tries such links without one too. */
	share_link: [
		/* socks5 and http(s) */
		'socks5://192.0.2.80:1080', 'socks5h://192.0.2.80:1080#x', 'socks5://user:pass@[2001:db8::80]:1080',
		'socks5://' + b64('user:pass') + '@192.0.2.80:1080', 'socks5://us%40er:p%3Ass@192.0.2.80:1080/',
		'socks5://nocolon@192.0.2.80:1080', 'socks5://:pw@192.0.2.80:1080', 'socks5://u:@192.0.2.80:1080',
		'socks5://u:p%zz@192.0.2.80:1080', 'socks5://192.0.2.80:1080?x=%zz', 'socks5://192.0.2.80:0',
		'http://192.0.2.80:3128', 'http://192.0.2.80:3128/path', 'https://192.0.2.80:443?sni=proxy.example&allowInsecure=1',
		'https://192.0.2.80:443?sni=bad..name', 'https://192.0.2.80:443?allowInsecure=maybe', 'https://proxy.example:443',
		/* ss: AEAD ciphers only, no plugins */
		'ss://YWVzLTI1Ni1nY206cGFzcw@192.0.2.80:8388#name', 'ss://' + b64('chacha20-ietf-poly1305:pw') + '@[2001:db8::80]:8388/?#x',
		'ss://aes-128-gcm:p%40ss@192.0.2.80:8388', 'ss://YWVzLTI1Ni1nY206cGFzc0AxOTIuMC4yLjgwOjgzODg#legacy',
		'ss://YWVzLTI1Ni1nY206cGFzcw@192.0.2.80:8388/?plugin=obfs-local%3Bobfs%3Dhttp#plugin',
		'ss://' + b64('rc4-md5:pw') + '@192.0.2.80:8388', 'ss://aes-256-cfb:pw@192.0.2.80:8388', 'ss://chacha20:pw@192.0.2.80:8388',
		'ss://2022-blake3-aes-256-gcm:YctPZ6U7xPPcU%2Bgp3u%2B0tx%2FtRizJN9K8y%2BuKlW2qjlI%3D@192.0.2.80:8388',
		'ss://aes-512-gcm:pw@192.0.2.80:8388', 'ss://aes-256-gcm:@192.0.2.80:8388', 'ss://' + b64('bf-cfb:pw@192.0.2.80:8388'),
		'ss://' + b64('aes-256-gcm:pw@proxy.example:8388'), 'ss://!!!#x', 'ss://aGVsbG8',
		/* trojan: TLS over plain TCP */
		'trojan://secret@192.0.2.80:443?sni=proxy.example#x', 'trojan://%21%3F%23@[2001:db8::2]:8443?peer=t.example&type=tcp&security=tls',
		'trojan://secret@proxy.example:443?sni=proxy.example#x', 'trojan://secret@192.0.2.80:443?type=ws&path=%2F',
		'trojan://secret@192.0.2.80:443?type=grpc', 'trojan://secret@192.0.2.80:443?security=reality',
		'trojan://secret@192.0.2.80:443?headerType=http', 'trojan://192.0.2.80:443', 'trojan://x@host:99999',
		/* vless: a UUID, no flow, tls or none */
		'vless://' + UUID + '@192.0.2.80:443?encryption=none&security=tls&sni=proxy.example&type=tcp#v',
		'vless://' + UUID.toUpperCase() + '@192.0.2.80:443', 'vless://uuid@192.0.2.80:443?security=tls',
		'vless://uuid@proxy.example:443?security=tls', 'vless://' + UUID.replace(/-/g, '') + '@192.0.2.80:443',
		'vless://' + UUID.replace('d', 'g') + '@192.0.2.80:443', 'vless://' + UUID + '@192.0.2.80:443?type=ws&path=%2F',
		'vless://' + UUID + '@192.0.2.80:443?security=reality&sni=www.example.com&pbk=abc',
		'vless://' + UUID + '@192.0.2.80:443?security=tls&flow=xtls-rprx-vision', 'vless://' + UUID + '@192.0.2.80:443?security=xtls',
		'vless://' + UUID + '@192.0.2.80:443?encryption=aes-128-gcm', 'vless://' + UUID + '@192.0.2.80',
		/* vmess: v2rayN JSON, AEAD (aid 0), plain TCP */
		vmess({}), vmess({ v: 2, port: 443, aid: 0, net: 'tcp', type: 'none', scy: 'auto', tls: 'tls', sni: 'proxy.example' }),
		vmess({ add: '[2001:db8::80]', scy: 'chacha20-poly1305', tls: '', 'skip-cert-verify': true }),
		vmess({ aid: '64' }), vmess({ aid: 1 }), vmess({ net: 'ws', path: '/' }), vmess({ net: 'grpc' }), vmess({ type: 'http' }),
		vmess({ scy: 'aes-256-cfb' }), vmess({ tls: 'reality' }), vmess({ tls: 'tls', sni: 'bad..name' }),
		vmess({ add: 'proxy.example' }), vmess({ port: '0' }), vmess('{"add":"192.0.2.80","port":443.0,"id":"' + UUID + '"}'),
		vmess('{"add":"192.0.2.80","port":"443","id":"' + UUID + '","aid":0.0}'), vmess({ port: null }), vmess({ add: [ '192.0.2.80' ] }),
		/* {"add":"192.0.2.80","port":"443","id":"x"}, {"add":"192.0.2.80"} */
		'vmess://eyJhZGQiOiIxOTIuMC4yLjgwIiwicG9ydCI6IjQ0MyIsImlkIjoieCJ9', 'vmess://eyJhZGQiOiIxOTIuMC4yLjgwIn0',
		'vmess://WzFd', 'vmess://!!!', 'vmess://aGVsbG8',
		/* no share link at all */
		'ftp://x:1', 'SOCKS5://192.0.2.80:1080', 'socks5://192.0.2.80', 'proxy',
		'socks5://[192.0.2.80]:1080', 'socks5://2001:db8::1:1080', 'socks5://a..b:1',
		/* servers given by host name */
		'socks5://proxy.example:1080', 'socks5h://Proxy.Example.:1080#x', 'http://proxy.example:3128',
		'ss://aes-256-gcm:pw@proxy.example:8388#n', 'vless://' + UUID + '@proxy.example:443?security=tls',
		vmess({ add: '[proxy.example]' }), vmess({ add: ' proxy.example ' }), 'socks5://-proxy.example:1080',
		'socks5://proxy_1.example:1080', 'socks5://[proxy.example]:1080', 'socks5://1.2.3:1080', '' ],

	/* config::check: http://HOST[:PORT][/PATH],IP,... */
	check_url: [ 'http://cp.cloudflare.com,1.1.1.1,2606:4700:4700::1111', 'http://192.0.2.1', 'http://[2001:db8::80]:8080/gen_204',
		'http://connectivitycheck.gstatic.com/generate_204,192.0.2.1', 'http://www.example.com:8080/a?b=1,192.0.2.1, 2001:db8::1',
		' http://192.0.2.1 ', 'http://Check.Example.:+80,192.0.2.1', 'http://[192.0.2.1]', 'http://2001:db8::1',
		'https://check.example,192.0.2.1', 'HTTP://192.0.2.1', 'check.example,192.0.2.1', 'http://check.example',
		'http://check.example,nope', 'http://check.example,192.0.2.1,', 'http://check.example:0,192.0.2.1',
		'http://check.example:65536,192.0.2.1', 'http://192.0.2.1/a b', 'http://192.0.2.1/a\u00a0b', 'http://',
		'http://[::1', 'http://[::1]x', 'http://a..b,192.0.2.1', 'http://192.0.2.1,fe80::1%2', 'http://user@check.example,192.0.2.1', '' ],

	/* config::check: HOST[:PORT],IP,... */
	check_dns: [ 'dns.google.com:53,8.8.8.8,2001:4860:4860::8888', '192.0.2.53', '192.0.2.53:5353', '[2001:db8::53]:53',
		'2001:db8::53', 'one.one.one.one,1.1.1.1', 'Example.COM.:53, 192.0.2.1 ', '1.2.3:53,192.0.2.1', '[192.0.2.53]',
		'dns.example:53', 'dns.example', 'dns.example:53,x', 'dns.example:53,192.0.2.1,', '192.0.2.53:0', '192.0.2.53:',
		'udp://192.0.2.53', '[::1', '[::1]:x', 'a..b:53,192.0.2.1', '256.1.1.1', 'fe80::1%2', '1.2.3', '' ],

	fixed_ttl: [ 'ddns.example.com:0', 'DDNS.example.:10', 'a:604800', 'a:604801', 'a:+5', 'a', 'a:-1',
		':5', 'a..b:5', 'host:ten', 'a:b:5', '' ],

	dns_request_rule: RULE_SHAPES.concat([
		'qname(suffix: lan) -> asis', 'qname(keyword: ads) -> reject', 'qtype(aaaa) && qname(full: v4.example.com) -> reject',
		'qname(lan) -> dns_a', '!qname(suffix: cn) -> dns_b', 'qname(regex: "^ads\\.") -> reject',
		'qname(regex: "(") -> reject', 'qname(regex: "a(?=b)") -> reject', 'qname(regex: "(?i)ads") -> reject',
		'qname(regex: "a{2,1}") -> reject', 'qname(regex: "a**") -> reject', 'qname(regex: "\\p{L}") -> reject',
		'qname(regex: "a\\1") -> reject', 'qname(regex: "[a-") -> reject', 'qname(regex: "[z-a]") -> reject',
		'qname(regex: "\\e") -> reject', 'qname(regex: "*a") -> reject', 'qname(regex: "[[:alpha:]]+") -> reject',
		'qname(regex: "(?P<n>a)|b") -> reject', 'qname(regex: "a{3}") -> reject', 'qname(regex: ")") -> reject',
		'qname(regex: "[]a]") -> reject', 'qname(regex: "\\x41\\u0042") -> reject', 'qname(regex: "(?)") -> reject',
		'qname(regex: "a|*") -> reject', 'qname(regex: "[a&&b]") -> reject', 'qname(regex: "\\d-\\w") -> reject',
		'qtype(a, aaaa, mx, 65, *, any, ANY) -> dns_a', 'qtype(bogus) -> dns_a', 'qtype(65536) -> dns_a', 'qtype(+28) -> dns_a',
		'qname(geosite:cn) -> dns_a', 'qname(ext:x) -> dns_a', 'qname(color: red) -> dns_a', 'qname(bad..name) -> dns_a',
		'qname(-a.example) -> dns_a', 'qname(a) -> accept', 'qname(a) -> nosuch', 'qname(a) -> dns_a(x)',
		'upstream(dns_a) -> dns_a', 'ip(192.0.2.0/24) -> dns_a', 'qtype(geoip:cn) -> dns_a', 'qname(a) -> Asis',
		'qname(\'a\') -> dns_a', 'qname(full: "a.example") -> dns_a', 'qname(keyword: "a b") -> dns_a',
		/* rule sets: the fixture's geodata_dir (tests/luci/lib/dae.js) */
		'qname(geosite:CN) -> reject', 'qname(geosite:google@cn, suffix: lan) -> dns_b', 'qname(geosite:cn@nosuch) -> dns_a',
		'qname(geosite:nosuch) -> dns_a', 'qname(geosite:cn@) -> dns_a', 'qname(geosite:@ads) -> dns_a',
		'qname(ext:extra.dat:work) -> dns_a', 'qname(ext:extra.dat:cn) -> dns_a', 'qname(ext:broken.dat:cn) -> dns_a',
		'qname(ext:absent.dat:cn) -> dns_a', 'qname(ext::cn) -> dns_a', 'qname(ext:geoip.dat:cn) -> dns_a',
		'qname(ext:readme.txt:cn) -> dns_a', 'qname(geoip:cn) -> dns_a', '!qname(geosite:category-ads-all) -> dns_a'
	]),

	dns_response_rule: RULE_SHAPES.map(r => r.replace(/dns_a/g, 'accept')).concat([
		'upstream(dns_a) && ip(192.0.2.0/24) -> dns_b', 'upstream(asis) && ip(2001:db8::/32, 192.0.2.7) && qtype(aaaa, 65) -> reject',
		'ip(192.0.2.0/33) -> dns_a', 'ip(2001:db8::/129) -> dns_a', 'ip(nonsense) -> dns_a', 'ip(192.0.2.0/+24) -> accept',
		'upstream(zz) -> dns_a', 'upstream(key: dns_a) -> accept', 'qname(a) -> asis', 'qname(a) -> accept',
		'qname(a) -> reject', 'qname(a) -> dns_b', 'ip(fe80::1) -> accept', 'ip(::1) -> accept', 'ip(geoip:cn) -> accept',
		'dport(53) -> accept',
		'ip(geoip:private, 192.0.2.0/24) -> reject', 'upstream(dns_a) && !ip(geoip:CN) -> dns_b', 'ip(geoip:nosuch) -> reject',
		'ip(geoip:cn@x) -> reject', 'ip(ext:geosite.dat:cn) -> reject', 'ip(ext:geoip.dat:private) -> reject',
		'ip(geosite:cn) -> reject', 'qname(geosite:google) && ip(geoip:cn) -> accept'
	]),

	routing_rule: [ 'dip(192.0.2.0/24) -> direct', 'dport(53) && l4proto(udp) -> direct',
		'mac(02:00:5e:00:53:01) && dport(80-443) && !ipversion(6) -> g(must)', 'mac(aa:bb:cc:dd:ee:ff) -> g',
		'mac(02:00:5e:00:53) -> direct', 'dport(70000) -> direct', 'dport(443-80) -> direct', 'sport(0) -> direct',
		'qname(a) -> direct', 'l4proto(icmp) -> direct', 'ipversion(5) -> block', 'domain(suffix: example.com) -> g',
		'domain(geosite:cn) -> direct', 'pname(curl) -> block', 'pname(key: x) -> block', 'dscp(46) -> direct',
		'dscp(64) -> direct', 'dscp(+1) -> direct', 'sip(2001:db8::/32) -> must_direct', 'dip(1.2.3) -> direct',
		'dip(192.0.2.1) -> nowhere', 'dip(192.0.2.1) -> n1', 'dip(192.0.2.1) -> direct(must)',
		'dip(192.0.2.1) -> g(must, x)', 'dip(192.0.2.1) -> g(fast)', 'dip(192.0.2.1) -> g(k: must)',
		'dip(192.0.2.1)', '-> direct', 'dip(192.0.2.1) || dport(1) -> direct',
		'dip(geoip:private) -> direct', 'sip(geoip:cn, 192.0.2.0/24) -> g', 'dip(geoip:nosuch) -> direct',
		'domain(geosite:google@ads) -> block', 'domain(ext:extra.dat:WORK) -> g', 'domain(ext:broken.dat:x) -> g',
		'dport(geoip:cn) -> direct', 'dip(geosite:cn) -> direct', 'domain(geoip:cn) -> direct', 'dip(ext:extra.dat:work) -> direct' ],

	dns_request_target: [ 'asis', 'reject', 'accept', 'dns_a', 'dns_b', 'nosuch', 'Asis', 'dns_a(x)', '' ],
	dns_response_target: [ 'accept', 'reject', 'asis', 'dns_a', 'nosuch', '' ],
	routing_target: [ 'direct', 'block', 'must_direct', 'g', 'n1', 'nowhere', 'g(must)', '' ],
	reference: [ 'n1', 'n2', 'g', 's1', 'nosuch', 'N1', '' ],
	group_policy: [ 'random', 'min', 'min_avg10', 'min_moving_avg', 'fixed(0)', 'fixed(1)', 'fixed(2)',
		'fixed( 1 )', 'fixed(+1)', 'fixed(-1)', 'fixed()', 'fixed', 'Random', 'fixed(1', 'fixed(01)', '' ],
	subscription_url: [ 'https://sub.example/api?token=abc', 'http://192.0.2.1:8080/sub', 'HTTPS://Sub.Example/x',
		'http://[2001:db8::1]/s', 'http://2001:db8::1/s', 'ftp://sub.example/', 'sub.example/x', 'https://',
		'https://user:pw@sub.example/', 'https://sub.example:0/', 'https://sub.example:70000/',
		'https://sub.example/a b', 'https://a..b/', 'https://sub.example?x=1', 'https://sub.example#frag',
		'http://999.1.1.1/', 'http://[sub.example]/', 'https://sub.example/\u0085', '' ],
	interval: [ '60', '59', '1d', '1h', '1m', '59s', '60s', '30d', '31d', '2592000', '2592001', '1w', 'd',
		'+60', '-60', ' 1d', '1d ', '1.5h', '060', '1D', '99999999999999999999999', '' ],
	node_filter: [ 'name(keyword: HK)', 'name(HK 01)', 'name(\'HK 01\')', 'name(regex: \'^HK\')',
		'name(regex: "(")', '!name(keyword: test)', 'subtag(s1) && !name(keyword: x)', 'name(kw: HK)',
		'dip(192.0.2.1)', 'name()', 'name', 'name(a) || name(b)', 'name(keyword: HK', 'name(keyword: HK) -> g',
		'name(a) && ', ' name(a)', '!!name(a)', '' ]
};
