'use strict';
'require view';
'require form';
'require uci';
'require tools.widgets as widgets';
'require dae.tools as tools';

/*
 * General settings: the `config dae` section of /etc/config/dae. Whether dae
 * runs, the LAN interfaces whose DNS it takes, logging, the low-level knobs
 * (transparent port, socket mark, WAN interface, paths) and the health
 * checks of the proxy nodes. Saved with the normal Save & Apply; the init
 * script's reload trigger picks the change up.
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
		s.tab('checks', _('Health checks'),
			_('dae checks every proxy node regularly, over TCP and UDP and over IPv4 and IPv6 separately. Groups pick only among the nodes that passed, and the Status page shows what the checks found.'));
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

		o = s.taboption('advanced', widgets.DeviceSelect, 'wan_interface', _('WAN interface'),
			_('The network device dae\'s own direct traffic leaves by: its queries to DNS servers and its connections to proxy servers (for example eth1, wan or pppoe-wan). Leave it unset to let the routing table decide, which is right for most routers.'));
		o.multiple = false;
		o.noaliases = true;
		o.nobridges = false;
		o.validate = tools.validator('interface');

		o = s.taboption('advanced', form.Value, 'bpf_object', _('TC program'),
			_('The compiled eBPF program attached to the LAN interfaces.'));
		o.placeholder = '/lib/bpf/dae_tc.o';
		o.validate = tools.validator('path');

		o = s.taboption('advanced', form.Value, 'geodata_dir', _('Rule set folder'),
			_('Where geosite.dat and geoip.dat are, for geosite:NAME and geoip:NAME in rules (the v2ray-geosite and v2ray-geoip packages put them here).'));
		o.placeholder = '/usr/share/v2ray';
		o.validate = tools.validator('path');

		o = s.taboption('advanced', form.Value, 'subscription_dir', _('Subscription folder'),
			_('Where the last good node list of each subscription is kept, so the nodes are there at boot before the first fetch. Written only when a list changes.'));
		o.placeholder = '/etc/dae/subscriptions';
		o.validate = tools.validator('path');

		o = s.taboption('advanced', form.Value, 'ca_file', _('CA certificates'),
			_('The certificates that tls://, https:// and quic:// upstreams are checked against (installed by the ca-bundle package).'));
		o.placeholder = '/etc/ssl/certs/ca-certificates.crt';
		o.validate = tools.validator('path');

		o = s.taboption('advanced', form.Value, 'status_socket', _('Status socket'),
			_('Where the status page asks the running daemon.'));
		o.placeholder = '/var/run/dae.sock';
		o.validate = tools.validator('path');

		o = s.taboption('checks', form.Value, 'check_interval', _('Check interval'),
			_('Seconds between two checks of each node (5 to 86400). Shorter finds a failed node sooner but sends more traffic through your proxies.'));
		o.placeholder = '30';
		o.validate = tools.validator('integer', { min: 5, max: 86400 });

		o = s.taboption('checks', form.Value, 'check_tolerance', _('Switch tolerance'),
			_('Milliseconds (0 to 60000). With the policies min, min_avg10 and min_moving_avg, a group keeps its current node until another one is faster by more than this, so that it does not jump between nodes of nearly the same speed.'));
		o.placeholder = '50';
		o.validate = tools.validator('integer', { min: 0, max: 60000 });

		o = s.taboption('checks', form.Value, 'tcp_check_url', _('TCP check'),
			_('A web page requested through each node: http://host[:port][/path], then the IP addresses of that host, separated by commas (checks never look names up). Plain http:// only. Nodes are checked over IPv6 only when an IPv6 address is given.'));
		o.placeholder = 'http://cp.cloudflare.com,1.1.1.1,2606:4700:4700::1111';
		o.validate = tools.validator('check_url');

		o = s.taboption('checks', form.Value, 'udp_check_dns', _('UDP check'),
			_('A DNS server asked through each node: host:port, then the IP addresses of that host, separated by commas; the host name is the question sent. Nodes are checked over IPv6 only when an IPv6 address is given.'));
		o.placeholder = 'dns.google.com:53,8.8.8.8,2001:4860:4860::8888';
		o.validate = tools.validator('check_dns');

		return m.render();
	}
});
