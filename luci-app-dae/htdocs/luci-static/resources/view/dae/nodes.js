'use strict';
'require view';
'require form';
'require uci';
'require ui';
'require dae.tools as tools';

/*
 * Proxy nodes: one `config node NAME` per share link. Links can be added one
 * by one in the table, or pasted several at once (one per line): each valid
 * link becomes a node named after its "#name" part, the others are listed
 * with the reason dae would refuse them.
 */

return view.extend({
	load: function() {
		return uci.load('dae');
	},

	/* Adds the valid links of `text` as nodes; returns what parseLinks found.
	 * A server given by host name is accepted when an upstream can look it
	 * up, as dae does. */
	importLinks: function(map, text) {
		var taken = uci.sections('dae').map(function(s) { return s['.name']; }),
		    res = tools.parseLinks(text, taken, tools.upstreamAddresses());

		res.nodes.forEach(function(node) {
			uci.add('dae', 'node', node.name);
			uci.set('dae', node.name, 'link', node.link);
		});

		ui.hideModal();

		if (res.errors.length)
			ui.addNotification(null, E('div', {}, [
				E('p', {}, _('These lines were not imported:')),
				E('ul', {}, res.errors.map(function(e) {
					return E('li', {}, [ _('line %d: %s').format(e.line, e.error) ]);
				}))
			]), 'warning');

		if (res.nodes.length)
			ui.addNotification(null, E('p', {}, [ _('Nodes added: %s. Save & Apply to use them.')
				.format(res.nodes.map(function(n) { return n.name; }).join(', ')) ]), 'info');

		return (res.nodes.length ? map.save(null, true) : Promise.resolve()).then(function() {
			return res;
		});
	},

	showImport: function(map) {
		var area = E('textarea', {
			'class': 'cbi-input-textarea',
			'style': 'width:100%',
			'rows': 10,
			'spellcheck': 'false',
			'placeholder': 'ss://...#hk1\nvless://...#jp1'
		});

		ui.showModal(_('Import share links'), [
			E('p', {}, _('Paste one share link per line (socks5, http, https, ss, trojan, vless, vmess). Each becomes a node named after the "#name" at its end. Links dae cannot use (a transport other than plain TCP, plugins, a server given by host name when no plain upstream at an IP address can look it up) are listed with the reason.')),
			area,
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'btn', 'click': ui.hideModal }, _('Cancel')),
				' ',
				E('button', {
					'class': 'btn cbi-button-action',
					'click': ui.createHandlerFn(this, function() {
						return this.importLinks(map, area.value);
					})
				}, _('Import'))
			])
		]);
	},

	render: function() {
		var m, s, o;

		m = new form.Map('dae', _('Nodes'),
			_('Proxy servers, each given by its share link. Groups pick among them.'));

		s = m.section(form.GridSection, 'node', _('Nodes'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;
		s.addbtntitle = _('Add node');
		tools.guardSections(s, 'node');

		o = s.option(form.Value, 'link', _('Share link'),
			_('socks5://, http://, https://, ss://, trojan://, vless:// or vmess:// link. The server is an IP address, or a host name looked up through the first plain upstream (udp, tcp) given by IP address on the DNS page. dae speaks these protocols over plain TCP only: links that need WebSocket, gRPC, REALITY, XTLS flows, Shadowsocks plugins or stream ciphers, or legacy VMess (alterId above 0), are refused.'));
		o.placeholder = 'socks5://192.0.2.80:1080';
		o.rmempty = false;
		o.validate = tools.validator('share_link', { required: true });

		o = s.option(form.DummyValue, '_server', _('Server'));
		o.modalonly = false;
		o.cfgvalue = function(section_id) {
			return tools.linkSummary(uci.get('dae', section_id, 'link'));
		};

		s = m.section(form.GridSection, 'subscription', _('Subscriptions'),
			_('A provider\'s URL that lists nodes (base64 or plain share links, or SIP008 JSON). dae fetches it at start and at each interval, through the way the routing rules give its host, keeps the last good list on flash, and puts the nodes into the groups that name the subscription. `dae update-subscriptions` fetches now.'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;
		s.addbtntitle = _('Add subscription');
		tools.guardSections(s, 'subscription');

		o = s.option(form.Value, 'url', _('URL'),
			_('http:// or https:// (checked against the CA certificates of the General page).'));
		o.placeholder = 'https://sub.example/api?token=...';
		o.rmempty = false;
		o.validate = tools.validator('subscription_url', { required: true });

		o = s.option(form.Value, 'interval', _('Interval'),
			_('How often the list is fetched again: seconds, or a number with s, m, h or d (1 minute to 30 days).'));
		o.placeholder = '1d';
		o.validate = tools.validator('interval', { min: 60, max: 2592000 });

		o = tools.flag(s.option(form.Flag, 'enabled', _('Enabled'),
			_('Off: the stored list is used as it is, never fetched.')));
		o.default = '1';

		return m.render().then(L.bind(function(mapEl) {
			/* The import button after the nodes (before the map, it stood above the title). */
			return E([], [ mapEl, E('div', { 'class': 'cbi-section' }, [
				E('button', {
					'class': 'cbi-button cbi-button-add',
					'click': ui.createHandlerFn(this, 'showImport', m)
				}, _('Import share links…'))
			]) ]);
		}, this));
	}
});
