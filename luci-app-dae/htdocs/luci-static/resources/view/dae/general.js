'use strict';
'require view';
'require form';
'require uci';
'require tools.widgets as widgets';
'require dae.tools as tools';

/*
 * General settings: the `config dae` section of /etc/config/dae. Whether dae
 * runs, the LAN interfaces whose DNS it takes, logging, and the low-level
 * knobs (transparent port, socket mark, paths). Saved with the normal
 * Save & Apply; the init script's reload trigger picks the change up.
 */

return view.extend({
	load: function() {
		return uci.load('dae').then(function() {
			tools.ensureSection('dae', 'config');
		});
	},

	render: function() {
		var m, s, o;

		m = new form.Map('dae', _('dae'),
			_('dae answers the DNS queries of the LAN itself: it takes them on the LAN interfaces, applies your rules and cache, and asks the upstream servers you set.'));

		s = m.section(form.TypedSection, 'dae', _('General Settings'));
		s.anonymous = true;
		s.addremove = false;
		s.tab('basic', _('Basic'));
		s.tab('advanced', _('Advanced'));

		o = tools.flag(s.taboption('basic', form.Flag, 'enabled', _('Enable'),
			_('Start dae with the router. While it is off, the Start button does nothing.')));
		o.default = '0';
		o.rmempty = false;

		o = s.taboption('basic', widgets.DeviceSelect, 'lan_interface', _('LAN interfaces'),
			_('DNS queries arriving on these interfaces are answered by dae, whichever server the client asked (usually br-lan). None: dae serves only its plain listeners.'));
		o.multiple = true;
		o.noaliases = true;
		o.nobridges = false;
		o.validate = tools.validator('interface');

		o = s.taboption('basic', form.ListValue, 'log_level', _('Log level'));
		o.value('error', _('Errors only'));
		o.value('warn', _('Warnings'));
		o.value('info', _('Information'));
		o.value('debug', _('Debug'));
		o.value('trace', _('Trace (very verbose)'));
		o.default = 'info';

		o = tools.flag(s.taboption('basic', form.Flag, 'fail_closed', _('Fail closed'),
			_('When dae is not running, drop the LAN\'s DNS queries instead of letting them through to the server they were sent to.')));
		o.default = '0';

		o = s.taboption('advanced', form.Value, 'tproxy_port', _('Transparent listener port'),
			_('Local port the intercepted queries are handed to. Change it only if another program uses it.'));
		o.placeholder = '12345';
		o.validate = tools.validator('port');

		o = s.taboption('advanced', form.Value, 'so_mark', _('Socket mark'),
			_('Firewall mark on dae\'s own traffic, so that it never loops back into dae (decimal, or hex like 0x80).'));
		o.placeholder = '0x80';
		o.validate = tools.validator('mark');

		o = s.taboption('advanced', form.Value, 'bpf_object', _('TC program'),
			_('The compiled eBPF program attached to the LAN interfaces.'));
		o.placeholder = '/lib/bpf/dae_tc.o';
		o.validate = tools.validator('path');

		o = s.taboption('advanced', form.Value, 'ca_file', _('CA certificates'),
			_('The certificates that tls://, https:// and quic:// upstreams are checked against (installed by the ca-bundle package).'));
		o.placeholder = '/etc/ssl/certs/ca-certificates.crt';
		o.validate = tools.validator('path');

		o = s.taboption('advanced', form.Value, 'status_socket', _('Status socket'),
			_('Where the status page asks the running daemon.'));
		o.placeholder = '/var/run/dae.sock';
		o.validate = tools.validator('path');

		return m.render();
	}
});
