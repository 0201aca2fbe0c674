'use strict';
'require view';
'require form';
'require uci';
'require dae.tools as tools';

/*
 * Routing: the `config routing` section, ordered rules that send traffic
 * direct, block it or hand it to a group, and the fallback for the rest.
 */

return view.extend({
	load: function() {
		return Promise.all([ uci.load('dae'), tools.loadGeodata() ]).then(function() {
			tools.ensureSection('routing', 'routing');
		});
	},

	render: function() {
		var m, s, o;

		m = new form.Map('dae', _('Routing'),
			_('Which traffic goes direct, is blocked, or goes through a group of proxy nodes. The rules route the LAN\'s TCP and UDP flows in the kernel (direct ones never reach dae; DNS always goes to dae\'s DNS controller) and dae\'s own upstream and health-check connections. An HTTP node carries no UDP: a UDP flow sent to a group of HTTP nodes only is dropped, never sent direct.'));

		s = m.section(form.TypedSection, 'routing', _('Routing rules'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.DynamicList, 'rule', _('Rules'),
			_('One rule per entry; the first that matches decides. Conditions: dip(192.0.2.0/24), sip(...), dport(443), sport(1024-65535), l4proto(tcp), ipversion(6), domain(suffix: example.com), mac(02:00:5e:00:53:01), pname(curl), dscp(46), joined with && and negated with !. After ->: direct, block, must_direct, or a group\'s name (add "(must)" to force it). Example: dport(53) && l4proto(udp) -> direct'));
		o.description += ' ' + _('The rule sets installed in the Rule set folder (General Settings) are offered as you type: geosite:NAME, geoip:NAME, ext:FILE:NAME.');
		o.placeholder = 'dip(192.0.2.0/24) -> direct';
		o.validate = tools.validator('routing_rule');
		tools.ruleSetPicker(o, [ 'domain', 'dip', 'sip' ]);

		o = s.option(form.Value, 'fallback', _('Fallback'),
			_('Where traffic that no rule matched goes.'));
		o.placeholder = 'direct';
		tools.targets('routing_target').forEach(function(name) {
			o.value(name, {
				direct: _('direct: not proxied'),
				block: _('block: dropped'),
				must_direct: _('must_direct: not proxied, not even DNS')
			}[name] || _('group %s').format(name));
		});
		o.validate = tools.validator('routing_target');

		return m.render();
	}
});
