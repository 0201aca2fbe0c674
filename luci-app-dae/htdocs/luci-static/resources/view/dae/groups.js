'use strict';
'require view';
'require form';
'require uci';
'require dae.tools as tools';

/*
 * Groups: `config group NAME`, a list of nodes (its own, and those of
 * subscriptions that pass its filters) and the policy that picks one of
 * them. Routing rules send traffic to groups by name.
 */

return view.extend({
	load: function() {
		return uci.load('dae');
	},

	render: function() {
		var m, s, o;

		m = new form.Map('dae', _('Groups'),
			_('A group holds proxy nodes and picks one of them for each connection. Routing rules name groups.'));

		s = m.section(form.GridSection, 'group', _('Groups'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;
		s.addbtntitle = _('Add group');
		tools.guardSections(s, 'group');

		o = s.option(form.DynamicList, 'node', _('Nodes'),
			_('In order: fixed(N) counts from 0. A group needs nodes, subscriptions or both.'));
		tools.names('node').forEach(function(name) {
			o.value(name);
		});
		o.validate = tools.validator('reference', { refers: 'node' });

		o = s.option(form.DynamicList, 'subscription', _('Subscriptions'),
			_('The nodes of these subscriptions (Nodes page) join the group, those that pass a filter if there are filters.'));
		tools.names('subscription').forEach(function(name) {
			o.value(name);
		});
		o.validate = tools.validator('reference', { refers: 'subscription' });

		o = s.option(form.DynamicList, 'filter', _('Filters'),
			_('A subscription node joins when any filter holds: name(keyword: HK), name(regex: ^HK), name(NAME) on the node\'s name, subtag(SUBSCRIPTION), with ! and &&.'));
		o.modalonly = true;
		o.validate = tools.validator('node_filter');

		o = s.option(form.Value, 'policy', _('Policy'),
			_('How a node is picked: random, fixed(N) (the Nth node, from 0), min (lowest last latency), min_avg10 (lowest average of the last 10) or min_moving_avg (lowest moving average).'));
		o.value('min_moving_avg', _('min_moving_avg: lowest moving average latency'));
		o.value('min_avg10', _('min_avg10: lowest average of the last 10 checks'));
		o.value('min', _('min: lowest last latency'));
		o.value('random', _('random'));
		o.value('fixed(0)', _('fixed(0): always the first node'));
		o.placeholder = 'min_moving_avg';
		o.validate = tools.validator('group_policy');

		return m.render();
	}
});
