'use strict';
'require view';
'require form';
'require uci';
'require dae.tools as tools';

/*
 * DNS settings: the upstream servers (`config upstream NAME`) and the
 * `config dns` section: request and response rules (ordered, first match
 * wins, with a fallback), the cache, the IP version preference and the
 * plain listeners. Every field is checked as `dae validate` checks it,
 * including rule syntax and the upstream names rules refer to.
 */

function describeAddress(address) {
	var m = /^([A-Za-z0-9+]+):\/\/(.*)$/.exec(address || '');
	if (!m)
		return '-';
	switch (m[1].toLowerCase()) {
	case 'udp': return _('Plain DNS over UDP');
	case 'tcp': return _('Plain DNS over TCP');
	case 'tcp+udp': return _('UDP, TCP when the answer is truncated');
	case 'tls': return _('DNS over TLS');
	case 'https': return _('DNS over HTTPS');
	case 'h3': return _('DNS over HTTP/3');
	case 'quic': return _('DNS over QUIC');
	}
	return '-';
}

function targetChoices(option, kind) {
	var labels = {
		asis: _('asis: the server the client asked'),
		reject: _('reject: an empty answer'),
		accept: _('accept: pass the answer on')
	};
	tools.targets(kind).forEach(function(name) {
		option.value(name, labels[name] || _('upstream %s').format(name));
	});
}

return view.extend({
	load: function() {
		return Promise.all([ uci.load('dae'), tools.loadGeodata() ]).then(function() {
			tools.ensureSection('dns', 'dns');
		});
	},

	render: function() {
		var m, s, o;

		m = new form.Map('dae', _('DNS'),
			_('Where dae sends the queries it answers, and the rules that decide it.'));

		s = m.section(form.GridSection, 'upstream', _('Upstream servers'),
			_('The DNS servers dae asks; rules send queries to them by name. Addresses: udp://, tcp:// or tcp+udp:// (port 53 by default), tls:// or quic:// (853), https:// or h3:// (443, path /dns-query by default), then an IP address (IPv6 in brackets) or a host name and an optional port, e.g. udp://192.0.2.53, tcp://[2001:db8::53]:5353, tls://dns.example or https://dns.example/dns-query. A host name is looked up through a plain upstream given by IP address, unless its Bootstrap address is set.'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;
		s.addbtntitle = _('Add upstream');
		tools.guardSections(s, 'upstream');

		o = s.option(form.Value, 'address', _('Address'));
		o.placeholder = 'udp://192.0.2.53:53';
		o.rmempty = false;
		o.validate = tools.validator('upstream_address', { required: true });

		o = s.option(form.Value, 'bootstrap', _('Bootstrap address'),
			_('The IP address of the host name in the address, so that it need not be looked up.'));
		o.modalonly = true;
		o.placeholder = '192.0.2.53';
		o.validate = tools.validator('ip_address');

		o = tools.flag(s.option(form.Flag, 'allow_insecure', _('Accept any certificate'),
			_('For tls://, https:// and quic://: do not check the server\'s certificate (self-signed servers). Anyone on the path could then answer in its place.')));
		o.modalonly = true;
		o.default = '0';

		o = s.option(form.DummyValue, '_protocol', _('Protocol'));
		o.modalonly = false;
		o.cfgvalue = function(section_id) {
			return describeAddress(uci.get('dae', section_id, 'address'));
		};

		s = m.section(form.TypedSection, 'dns', _('Resolving'));
		s.anonymous = true;
		s.addremove = false;
		s.tab('request', _('Request rules'));
		s.tab('response', _('Response rules'));
		s.tab('cache', _('Cache'));
		s.tab('other', _('Other'));

		o = s.taboption('request', form.DynamicList, 'request_rule', _('Request rules'),
			_('One rule per entry; the first that matches decides. Conditions: qname(suffix: example.com, keyword: ads, full: www.example.com, regex: "^ads\\.") and qtype(aaaa, mx), joined with && and negated with !. After ->: an upstream\'s name, asis (the server the client asked) or reject (an empty answer). Example: qname(suffix: lan) -> asis'));
		o.description += ' ' + _('The rule sets installed in the Rule set folder (General Settings) are offered as you type: geosite:NAME, geoip:NAME, ext:FILE:NAME.');
		o.placeholder = 'qname(keyword: ads) -> reject';
		o.validate = tools.validator('dns_request_rule');
		tools.ruleSetPicker(o, [ 'qname' ]);

		o = s.taboption('request', form.Value, 'request_fallback', _('Request fallback'),
			_('Where queries that no rule matched go. Name an upstream when dae serves only its plain listeners: asis has no server to go to there.'));
		o.placeholder = 'asis';
		targetChoices(o, 'dns_request_target');
		o.validate = tools.validator('dns_request_target');

		o = s.taboption('response', form.DynamicList, 'response_rule', _('Response rules'),
			_('Checked on each answer, the first that matches decides. Conditions as for requests, plus upstream(name) (who answered) and ip(192.0.2.0/24, 2001:db8::/32) (an address in the answer). After ->: accept, reject, or an upstream\'s name to ask again. Example: upstream(dns_a) && ip(192.0.2.0/24) -> dns_b'));
		o.description += ' ' + _('The rule sets installed in the Rule set folder (General Settings) are offered as you type: geosite:NAME, geoip:NAME, ext:FILE:NAME.');
		o.placeholder = 'upstream(dns_a) && ip(192.0.2.0/24) -> reject';
		o.validate = tools.validator('dns_response_rule');
		tools.ruleSetPicker(o, [ 'qname', 'ip' ]);

		o = s.taboption('response', form.Value, 'response_fallback', _('Response fallback'),
			_('What happens to answers that no rule matched.'));
		o.placeholder = 'accept';
		targetChoices(o, 'dns_response_target');
		o.validate = tools.validator('dns_response_target');

		o = s.taboption('cache', form.Value, 'cache_size', _('Cache size'),
			_('Answers kept at most (0: no cache). The cache never grows past it.'));
		o.placeholder = '4096';
		o.validate = tools.validator('integer', { min: 0, max: 1048576 });

		o = tools.flag(s.taboption('cache', form.Flag, 'serve_stale', _('Serve stale answers'),
			_('Answer an expired entry at once (with TTL 30) while it is refreshed in the background.')));
		o.default = '1';

		o = s.taboption('cache', form.Value, 'stale_window', _('Stale window'),
			_('Seconds after expiry that an entry may still be served.'));
		o.placeholder = '86400';
		o.validate = tools.validator('integer', { min: 0, max: 604800 });

		o = s.taboption('cache', form.DynamicList, 'fixed_domain_ttl', _('Fixed TTLs'),
			_('NAME:SECONDS: cache answers for that name exactly that long; 0 never caches them (for DDNS names).'));
		o.placeholder = 'ddns.example.com:0';
		o.validate = tools.validator('fixed_ttl');

		o = s.taboption('other', form.ListValue, 'ipversion_prefer', _('IP version preference'),
			_('With IPv4 (IPv6) preferred, AAAA (A) queries for names that have A (AAAA) records get an empty answer.'));
		o.value('0', _('No preference'));
		o.value('4', _('Prefer IPv4'));
		o.value('6', _('Prefer IPv6'));
		o.default = '0';

		o = s.taboption('other', form.Value, 'upstream_timeout', _('Upstream timeout'),
			_('Seconds to wait for an upstream before answering SERVFAIL (1 to 30).'));
		o.placeholder = '4';
		o.validate = tools.validator('integer', { min: 1, max: 30 });

		o = s.taboption('other', form.DynamicList, 'dns_listen', _('Plain listeners'),
			_('Addresses where dae also answers ordinary DNS over UDP and TCP, e.g. 127.0.0.1:5335 behind dnsmasq.'));
		o.placeholder = '127.0.0.1:5335';
		o.validate = tools.validator('listen_address');

		o = tools.flag(s.taboption('other', form.Flag, 'allow_remote', _('Answer any source'),
			_('Let the plain listeners answer queries from anywhere, not only from this router and its LAN subnets. A listener the internet can reach then makes the router an open resolver.')));
		o.default = '0';

		return m.render();
	}
});
