'use strict';
'require view';
'require dom';
'require fs';
'require poll';
'require rpc';
'require uci';
'require ui';

/*
 * Status page: whether dae runs (procd's `service list`), what the running
 * daemon reports (`dae status --json`: version, interfaces, the proxy groups
 * with the node each uses and what the health checks found, datapath
 * counters, DNS figures, cache), buttons for the init script's start, stop,
 * restart and reload, and the last lines of dae's log (`logread -e dae`).
 * Refreshed every 5 seconds.
 */

var DAE = '/usr/bin/dae';
var INIT = '/etc/init.d/dae';
var LOGREAD = '/sbin/logread';
var LOG_LINES = 50;

var callServiceList = rpc.declare({
	object: 'service',
	method: 'list',
	params: [ 'name' ],
	expect: { '': {} }
});

/* The one command the read-only ACL grants: `dae status` finds the
 * socket from /etc/config/dae itself. */
function statusArgs() {
	return [ 'status', '--json' ];
}

function isRunning(services) {
	var inst = (services && services.dae && services.dae.instances) ? services.dae.instances.dae : null;
	return !!(inst && inst.running);
}

/* The daemon's report, or { error } when it cannot be had. */
function readStatus(running) {
	if (!running)
		return Promise.resolve(null);
	return L.resolveDefault(fs.exec(DAE, statusArgs()), null).then(function(res) {
		if (res && res.code == 0) {
			try {
				return JSON.parse(res.stdout);
			}
			catch (e) {
				return { error: _('The daemon answered something that is not JSON.') };
			}
		}
		return { error: (res && res.stderr) ? res.stderr.trim() : _('The daemon did not answer.') };
	});
}

function readVersion() {
	return L.resolveDefault(fs.exec(DAE, [ '--version' ]), null).then(function(res) {
		return (res && res.code == 0) ? res.stdout.trim().replace(/^dae\s+/, '') : null;
	});
}

function readLog() {
	return L.resolveDefault(fs.exec(LOGREAD, [ '-e', 'dae' ]), null).then(function(res) {
		if (!res || res.code != 0)
			return null;
		var lines = (res.stdout || '').split('\n').filter(function(l) { return l.length; });
		return lines.slice(-LOG_LINES);
	});
}

function number(v) {
	return (v == null) ? '-' : String(v);
}

function table(rows) {
	return E('table', { 'class': 'table' }, rows.map(function(row) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '40%' }, [ row[0] ]),
			E('td', { 'class': 'td left' }, [ row[1] ])
		]);
	}));
}

function section(title, body) {
	return E('div', { 'class': 'cbi-section' }, [ E('h3', {}, [ title ]) ].concat(body));
}

/* The four paths a node is checked on and a group picks a node for, in
 * the order `dae status` shows them. */
var PATHS = [
	[ 'tcp4', _('TCP, IPv4') ],
	[ 'udp4', _('UDP, IPv4') ],
	[ 'tcp6', _('TCP, IPv6') ],
	[ 'udp6', _('UDP, IPv6') ]
];

/* The report names policies as dae's code does (MinMovingAvg, Fixed(1));
 * shown as the config writes them. */
/* The daemon reports policies as the config writes them (min_avg10, fixed(1)). */
function policyName(policy) {
	return String(policy || '-');
}

function bad(children) {
	return E('strong', { 'style': 'color:#c00' }, children);
}

/* What the checks found for one path of a node. `avg`: the average the
 * group's policy ranks by (avg10_ms, moving_avg_ms), if any. */
function pathState(node, key, avg) {
	var p = node[key] || {};
	if (key.charAt(0) == 'u' && (node.protocol == 'http' || node.protocol == 'https'))
		return E('em', {}, [ _('no UDP (HTTP proxy)') ]);
	if (!p.checked)
		return E('em', {}, [ _('not checked yet') ]);
	if (!p.alive)
		return E('span', {}, [ bad([ _('DOWN') ]), ' ', p.error || _('(no reason given)') ]);
	if (p.latency_ms == null)
		return _('up');
	if (avg && p[avg] != null && p[avg] != p.latency_ms)
		return _('%d ms (average %d ms)').format(p.latency_ms, p[avg]);
	return _('%d ms').format(p.latency_ms);
}

function cell(title, children) {
	return E('td', { 'class': 'td left', 'data-title': title }, children);
}

/* One group: the node in use on each path, then every node's checks. */
function groupTable(g) {
	var policy = policyName(g.policy), selected = g.selected || {},
	    avg = { min_avg10: 'avg10_ms', min_moving_avg: 'moving_avg_ms' }[policy] || null;
	var rows = [
		E('tr', { 'class': 'tr table-titles' }, [ E('th', { 'class': 'th' }, [ _('Node') ]) ].concat(PATHS.map(function(path) {
			return E('th', { 'class': 'th' }, [ path[1] ]);
		}))),
		E('tr', { 'class': 'tr' }, [ cell(_('Node'), [ E('strong', {}, [ _('In use') ]) ]) ].concat(PATHS.map(function(path) {
			return cell(path[1], [ selected[path[0]] ? E('strong', {}, [ selected[path[0]] ]) : bad([ _('no node alive') ]) ]);
		})))
	];
	(g.nodes || []).forEach(function(n) {
		rows.push(E('tr', { 'class': 'tr' }, [
			cell(_('Node'), [ E('span', {}, [ n.name ]), E('br'), E('small', {}, [ '%s %s'.format(n.protocol || '?', n.server || '?') ]) ])
		].concat(PATHS.map(function(path) {
			return cell(path[1], [ pathState(n, path[0], avg) ]);
		}))));
	});
	var empty = PATHS.filter(function(path) { return !selected[path[0]]; }).map(function(path) { return path[1]; });
	return [
		E('h4', {}, [ _('Group %s').format(g.name), ' ', E('small', {}, [ _('(policy %s)').format(policy) ]) ]),
		E('table', { 'class': 'table' }, rows)
	].concat(empty.length ? [ E('div', { 'class': 'alert-message warning' }, [
		_('No node of this group is alive for %s: what is routed to this group there fails (it is never sent direct instead).').format(empty.join(', '))
	]) ] : []);
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callServiceList('dae'), {}),
			uci.load('dae')
		]).then(L.bind(this.refreshData, this));
	},

	/* Everything the page shows, fetched anew. */
	refreshData: function(first) {
		var services = first ? first[0] : null;
		var list = services ? Promise.resolve(services) : L.resolveDefault(callServiceList('dae'), {});
		return list.then(function(svc) {
			var running = isRunning(svc);
			return Promise.all([
				readStatus(running),
				running ? Promise.resolve(null) : readVersion(),
				readLog()
			]).then(function(res) {
				return {
					running: running,
					status: res[0],
					version: res[0] && res[0].version ? res[0].version : res[1],
					log: res[2],
					enabled: uci.get_first('dae', 'dae', 'enabled')
				};
			});
		});
	},

	renderService: function(data) {
		var st = data.status, rows = [];

		rows.push([ _('Running'), data.running ? E('strong', {}, _('yes')) : E('em', {}, _('no')) ]);
		rows.push([ _('Version'), data.version || '-' ]);

		if (data.running && st && !st.error) {
			rows.push([ _('Process'), _('pid %d, up %s').format(st.pid, '%t'.format(st.uptime_seconds)) ]);
			rows.push([ _('Intercepting on'), (st.interfaces && st.interfaces.length)
				? st.interfaces.join(', ') : _('no interface (plain listeners only)') ]);
			rows.push([ _('Transparent port'), number(st.tproxy_port) ]);
			rows.push([ _('While dae is down'), st.fail_closed
				? _('LAN DNS is dropped (fail closed)') : _('LAN DNS passes untouched (fail open)') ]);
			if (st.dns_listen && st.dns_listen.length)
				rows.push([ _('Plain listeners'), st.dns_listen.join(', ') ]);
		}

		var body = [ table(rows) ];

		if (data.running && st && st.error)
			body.push(E('div', { 'class': 'alert-message warning' }, [ _('Cannot read the daemon\'s status: %s').format(st.error) ]));

		if (data.enabled != '1' && data.enabled != 'true' && data.enabled != 'yes' && data.enabled != 'on')
			body.push(E('div', { 'class': 'alert-message notice' },
				_('dae is disabled in the General Settings: it does not start with the router, and Start does nothing until it is enabled.')));

		return section(_('Service'), body);
	},

	renderGroups: function(data) {
		var st = data.status;
		if (!data.running || !st || st.error || !Array.isArray(st.groups) || !st.groups.length)
			return E('div', {}, []);
		return section(_('Proxy groups'), st.groups.reduce(function(acc, g) {
			return acc.concat(groupTable(g));
		}, []));
	},

	renderCounters: function(data) {
		var st = data.status;
		if (!data.running || !st || st.error)
			return E('div', {}, []);

		var out = [], d = st.datapath, dns = st.dns || {}, c = st.cache || {};

		if (d)
			out.push(section(_('Datapath'), [ table([
				[ _('LAN DNS packets seen'), number(d.seen) ],
				[ _('Handed to dae'), number(d.handed) ],
				[ _('Passed (no listener)'), number(d.passed) ],
				[ _('Dropped (fail closed)'), number(d.dropped) ],
				[ _('Hand-over failures'), number(d.assign_failed) ]
			]) ]));

		if (d)
			out.push(section(_('LAN flows (TCP and UDP)'), [ table([
				[ _('Routed direct in the kernel'), number(d.flows_direct) ],
				[ _('Sent to a proxy group'), number(d.flows_proxied) ],
				[ _('Handed to dae to learn their domain'), number(d.flows_sniffed) ],
				[ _('Blocked'), number(d.flows_blocked) ],
				[ _('Never routed (to the router, the LAN, multicast)'), number(d.flows_bypassed) ],
				[ _('Packets that found no relay'), number(d.flows_no_relay) ]
			]) ]));

		var relay = st.relay;
		if (relay) {
			var ways = Object.keys(relay.tcp || {}).sort();
			out.push(section(_('Relayed connections'), [
				ways.length ? table(ways.map(function(name) {
					var w = relay.tcp[name];
					return [ name, _('%s open, %s in all, %s failed; %s up, %s down').format(
						number(w.active), number(w.total), number(w.failed),
						'%1024mB'.format(w.bytes_up || 0), '%1024mB'.format(w.bytes_down || 0)) ];
				})) : E('p', {}, _('None yet.')),
				table([
					[ _('Refused: no live node in the group'), number(relay.refused_no_node) ],
					[ _('Blocked after sniffing'), number(relay.blocked) ],
					[ _('Ended after being idle'), number(relay.idled_out) ]
				])
			]));
		}

		var udp = relay && relay.udp;
		if (udp) {
			var uways = Object.keys(udp.ways || {}).sort();
			out.push(section(_('Relayed UDP'), [
				uways.length ? table(uways.map(function(name) {
					var w = udp.ways[name];
					return [ name, _('%s endpoints, %s in all, %s failed; %s datagrams (%s) up, %s (%s) down').format(
						number(w.endpoints), number(w.total), number(w.failed),
						number(w.datagrams_up), '%1024mB'.format(w.bytes_up || 0),
						number(w.datagrams_down), '%1024mB'.format(w.bytes_down || 0)) ];
				})) : E('p', {}, _('None yet.')),
				table([
					[ _('Endpoints'), _('%s of %s').format(number(udp.endpoints), number(udp.capacity)) ],
					[ _('Expired (idle past their NAT timeout)'), number(udp.expired) ],
					[ _('Evicted (the pool was full)'), number(udp.evicted) ],
					[ _('Routed by a sniffed QUIC name'), number(udp.sniffed) ],
					[ _('Blocked after sniffing'), number(udp.blocked) ],
					[ _('Refused: no live UDP node in the group'), number(udp.refused_no_node) ],
					[ _('Datagrams dropped'), number(udp.dropped) ]
				])
			]));
		}

		out.push(section(_('DNS'), [ table([
			[ _('Queries'), number(dns.queries) ],
			[ _('Upstream exchanges'), number(dns.upstream_exchanges) ],
			[ _('Upstream failures'), number(dns.upstream_failures) ],
			[ _('Answered SERVFAIL'), number(dns.servfail) ],
			[ _('Rejected by rules'), number(dns.rejected) ],
			[ _('Refused'), number(dns.refused) ],
			[ _('Malformed queries'), number(dns.malformed) ]
		]) ]));

		var lookups = (c.hits || 0) + (c.stale_hits || 0) + (c.misses || 0);
		out.push(section(_('Cache'), [ table([
			[ _('Entries'), _('%s of %s').format(number(c.entries), number(c.capacity)) ],
			[ _('Hits'), number(c.hits) ],
			[ _('Stale hits'), number(c.stale_hits) ],
			[ _('Misses'), number(c.misses) ],
			[ _('Hit rate'), lookups ? '%.1f%%'.format(100 * ((c.hits || 0) + (c.stale_hits || 0)) / lookups) : '-' ],
			[ _('Inserts'), number(c.inserts) ],
			[ _('Evictions'), number(c.evictions) ]
		]) ]));

		return E('div', {}, out);
	},

	renderLog: function(data) {
		return section(_('Log'), [
			(data.log && data.log.length)
				? E('pre', { 'style': 'white-space:pre-wrap' }, [ data.log.join('\n') ])
				: E('em', {}, (data.log == null) ? _('The system log cannot be read.') : _('dae has not logged anything yet.'))
		]);
	},

	renderContent: function(data) {
		return [ this.renderService(data), this.renderGroups(data), this.renderCounters(data), this.renderLog(data) ];
	},

	handleAction: function(action) {
		return fs.exec(INIT, [ action ]).then(function(res) {
			if (res.code != 0)
				ui.addNotification(null, E('p', {}, [ _('"%s" failed: %s').format(action,
					(res.stderr || res.stdout || '').trim() || _('exit code %d').format(res.code)) ]), 'error');
		}).catch(function(e) {
			ui.addNotification(null, E('p', {}, [ _('"%s" failed: %s').format(action, e.message) ]), 'error');
		}).then(L.bind(this.refresh, this));
	},

	refresh: function() {
		return this.refreshData().then(L.bind(function(data) {
			dom.content(this.content, this.renderContent(data));
		}, this));
	},

	render: function(data) {
		var buttons = [
			[ 'start', _('Start'), 'cbi-button-apply' ],
			[ 'stop', _('Stop'), 'cbi-button-reset' ],
			[ 'restart', _('Restart'), 'cbi-button-action' ],
			[ 'reload', _('Reload'), 'cbi-button-action' ]
		].map(L.bind(function(b) {
			return E('button', {
				'class': 'cbi-button ' + b[2],
				'click': ui.createHandlerFn(this, 'handleAction', b[0])
			}, b[1]);
		}, this));

		this.content = E('div', {}, this.renderContent(data));

		poll.add(L.bind(this.refresh, this), 5);

		return E([], [
			E('h2', {}, _('dae')),
			E('div', { 'class': 'cbi-map-descr' }, _('The DNS controller of this router: what it is doing now.')),
			/* Not a cbi-page-actions box: the themes float every button there
			 * but apply and reset to the left, out of this order. */
			E('div', { 'class': 'dae-service-actions' }, buttons.reduce(function(acc, b) {
				return acc.concat([ b, ' ' ]);
			}, [])),
			this.content
		]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
