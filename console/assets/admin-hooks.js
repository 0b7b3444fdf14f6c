// Admin sections for maintenance windows (pre-approved times for agents in window mode:
// add, remove) and webhooks (add with a secret shown once, remove, recent deliveries).
import { timeText, minutesText } from './common.js';
import { section, list, change, guarded, button, form, table, cell, orgOptions, redraw } from './admin.js';

const enc = encodeURIComponent;
const words = (s) => s.split(/[\s,]+/).filter(Boolean);

section({
  name: 'windows', title: 'Maintenance windows', order: 50,
  async render(me, body) {
    const [windows, orgs] = await Promise.all([list('windows'), orgOptions()]);
    body.append(table('admin-windows', ['Window', 'Where', 'When (UTC)', 'Allows', 'Engineers', 'Open now', ''], windows, (tr, w) => {
      tr.dataset.window = w.id;
      cell(tr, w.id);
      cell(tr, w.agent ? `${w.agent} (${w.org})` : `every agent of ${w.org}`);
      cell(tr, `${w.schedule}, for ${minutesText(w.duration_secs * 1000)}`);
      cell(tr, w.capabilities.join(', '));
      cell(tr, w.engineers.join(', '));
      cell(tr, w.open_now_secs ? `yes, ${minutesText(w.open_now_secs * 1000)} left` : 'no');
      cell(tr, '', 'row-actions').append(guarded('Remove', `Remove window ${w.id}? Requests are asked again from then on.`,
        'Yes, remove', () => change(`windows/${enc(w.id)}/remove`), 'secondary remove'));
    }, 'No maintenance window.'));
    body.append(form('add-window', 'Add a maintenance window', [
      { id: 'org', label: 'Organisation', type: 'select', options: orgs, value: me.org },
      { id: 'agent', label: 'Agent', optional: true, hint: 'Empty: every agent of the organisation in window mode.' },
      { id: 'schedule', label: 'Opens at (cron, UTC)', value: '0 22 * * SAT', hint: 'Minute, hour, day, month, weekday. "0 22 * * SAT": Saturdays at 22:00 UTC.' },
      { id: 'minutes', label: 'Stays open (minutes)', type: 'number', value: '120' },
      { id: 'capabilities', label: 'Allows', hint: 'For example: shell files.read:/var/log' },
      { id: 'engineers', label: 'Engineers', hint: 'User names, separated by spaces or commas.' },
      { id: 'note', label: 'Note', optional: true },
    ], 'Add window', (v) => change('windows', {
      org: v.org, agent: v.agent || null, schedule: v.schedule, minutes: Number(v.minutes),
      capabilities: words(v.capabilities), engineers: words(v.engineers), note: v.note || null,
    })));
  },
});

function deliveries(hook) {
  return table(`deliveries-${hook.id}`, ['Event', 'State', 'Attempts', 'Answer', 'Last error', 'Updated'], hook.deliveries, (tr, d) => {
    tr.dataset.delivery = d.id;
    cell(tr, d.event);
    cell(tr, d.state, `delivery-state ${d.state}`);
    cell(tr, d.attempts);
    cell(tr, d.last_status == null ? '' : `HTTP ${d.last_status}`);
    cell(tr, d.last_error || '');
    cell(tr, timeText(d.updated_at));
  }, 'Nothing sent yet.');
}

section({
  name: 'webhooks', title: 'Webhooks', order: 60,
  async render(me, body) {
    const [hooks, orgs] = await Promise.all([list('webhooks'), orgOptions()]);
    body.append(button('Refresh', redraw, 'plain refresh'));
    if (hooks.length === 0) {
      const p = document.createElement('p');
      p.className = 'empty';
      p.textContent = 'No webhook.';
      body.append(p);
    }
    for (const h of hooks) {
      const box = document.createElement('section');
      box.className = 'hook';
      box.dataset.webhook = h.id;
      const title = document.createElement('h2');
      title.textContent = `${h.id} · ${h.org}`;
      const url = document.createElement('p');
      url.className = 'hash';
      url.textContent = h.url;
      const what = document.createElement('p');
      what.className = 'small';
      what.textContent = `${h.format} · events: ${h.events.join(', ')} · added ${timeText(h.created_at)}`;
      box.append(title, url, what, deliveries(h), guarded('Remove webhook', `Remove ${h.id}? Deliveries not sent yet are cancelled.`,
        'Yes, remove', () => change(`webhooks/${enc(h.id)}/remove`), 'secondary remove'));
      body.append(box);
    }
    body.append(form('add-webhook', 'Add a webhook', [
      { id: 'org', label: 'Organisation', type: 'select', options: orgs, value: me.org },
      { id: 'url', label: 'Address (URL)', type: 'url', hint: 'Where the relay POSTs signed events, https:// (or http:// on a private network).' },
      { id: 'events', label: 'Events', optional: true, hint: 'Comma-separated, for example session.approved,session.ended. Empty: the usual session events.' },
      { id: 'format', label: 'Format', type: 'select', options: [['json', 'JSON (ticketing systems)'], ['chat', 'Chat message']] },
    ], 'Add webhook', (v) => change('webhooks', { org: v.org, url: v.url, events: v.events || null, format: v.format }, {
      key: 'secret', title: 'Webhook signing secret',
      note: 'The receiver checks each delivery\'s signature with it. It is shown only now.',
    })));
  },
});
