// Admin sections for agents (online as the relay knows it now, and in a cluster the relays
// it is connected to; revoke) and the join tokens that enrol them (create, shown once; list).
import { timeText } from './common.js';
import { section, list, change, guarded, button, form, table, cell, orgOptions, redraw } from './admin.js';

const enc = encodeURIComponent;

section({
  name: 'agents', title: 'Agents', order: 30,
  async render(me, body) {
    const agents = await list('agents');
    body.append(button('Refresh', redraw, 'plain refresh'));
    body.append(table('admin-agents', ['Agent', 'Organisation', 'Connected', 'Consent', 'Last seen', ''], agents, (tr, a) => {
      tr.dataset.agent = a.name;
      cell(tr, a.name);
      cell(tr, a.org);
      const online = a.revoked ? 'revoked' : (a.online ? 'online' : 'offline');
      // In a cluster, the relays it is connected to (a single relay is 'default').
      const relays = (a.relays || []).filter((r) => r !== 'default');
      const where = !a.revoked && relays.length ? ` (connected to ${relays.join(', ')})` : '';
      cell(tr, online + where, `online ${online}`);
      cell(tr, a.consent || '');
      cell(tr, a.last_seen ? timeText(a.last_seen) : 'never');
      const actions = cell(tr, '', 'row-actions');
      if (!a.revoked) {
        actions.append(guarded('Revoke', `Revoke ${a.name}? Its connection closes and it can never connect again with this certificate.`,
          'Yes, revoke', () => change(`agents/${enc(a.name)}/revoke`), 'secondary revoke'));
      }
    }, 'No agent is enrolled yet. Create a join token below and run assist-agent enroll with it on the customer\'s machine.'));
  },
});

const VALID = [['15', '15 minutes'], ['60', '1 hour'], ['1440', '1 day'], ['10080', '7 days']];

section({
  name: 'tokens', title: 'Join tokens', order: 40,
  async render(me, body) {
    const [tokens, orgs] = await Promise.all([list('tokens'), orgOptions()]);
    body.append(table('admin-tokens', ['Token', 'Organisation', 'Created', 'Valid until', 'Used'], tokens, (tr, t) => {
      cell(tr, t.id, 'hash');
      cell(tr, t.org);
      cell(tr, timeText(t.created_at));
      cell(tr, timeText(t.expires_at));
      cell(tr, t.used_at ? timeText(t.used_at) : (t.expires_at < Date.now() ? 'expired unused' : 'not yet'));
    }, 'No join token was created yet.'));
    body.append(form('add-token', 'Create a join token', [
      { id: 'org', label: 'Organisation of the agent', type: 'select', options: orgs, value: me.org },
      { id: 'minutes', label: 'Valid for', type: 'select', options: VALID, value: '60' },
    ], 'Create token', (v) => change('tokens', { org: v.org, minutes: Number(v.minutes) }, {
      key: 'token', title: `Join token for ${v.org}`,
      note: 'It enrols one agent, once. It is shown only now; only its fingerprint is kept.',
    })));
  },
});
