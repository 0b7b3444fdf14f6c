// Admin sections for organisations (who supports whom) and users (add with a role and a
// password shown once, change role, reset password, disable, enable, remove).
import { timeText } from './common.js';
import { section, isOperator, list, change, guarded, button, form, table, cell, orgOptions } from './admin.js';

const ROLES = [['engineer', 'Engineer'], ['approver', 'Approver'], ['auditor', 'Auditor'], ['admin', 'Administrator']];
const enc = encodeURIComponent;

section({
  name: 'orgs', title: 'Organisations', order: 10,
  async render(me, body) {
    const orgs = await list('orgs');
    const operator = isOperator(me);
    const intro = document.createElement('p');
    intro.className = 'small';
    intro.textContent = 'Engineers of a supporting organisation may ask for sessions on the organisation\'s agents; its approvers still decide each request.';
    body.append(intro, table('admin-orgs', ['Organisation', 'Supported by', 'Created'], orgs, (tr, o) => {
      tr.dataset.org = o.name;
      cell(tr, o.name);
      const td = cell(tr, o.supported_by.length ? '' : 'nobody');
      for (const v of o.supported_by) {
        const line = document.createElement('div');
        line.className = 'pair';
        line.dataset.vendor = v;
        line.append(document.createTextNode(v));
        if (operator) {
          line.append(guarded('Stop', `Stop ${v} supporting ${o.name}? Their engineers can no longer ask for sessions there.`, 'Yes, stop',
            () => change(`orgs/${enc(o.name)}/support`, { vendor: v, on: false })));
        }
        td.append(line);
      }
      cell(tr, timeText(o.created_at));
    }, 'No organisation yet.'));
    if (!operator) return;
    const names = orgs.map((o) => [o.name, o.name]);
    body.append(form('add-support', 'Let an organisation support another', [
      { id: 'vendor', label: 'Supporting organisation (the vendor)', type: 'select', options: names },
      { id: 'customer', label: 'Supported organisation (the customer)', type: 'select', options: names },
    ], 'Add support', (v) => change(`orgs/${enc(v.customer)}/support`, { vendor: v.vendor, on: true })));
    body.append(form('add-org', 'Add an organisation', [
      { id: 'name', label: 'Name', hint: 'Letters, digits, dots, dashes and underscores.' },
      { id: 'vendor', label: 'Supported by', type: 'select', options: [['', 'nobody yet'], ...names] },
    ], 'Add organisation', (v) => change('orgs', { name: v.name, supported_by: v.vendor ? [v.vendor] : [] })));
  },
});

function stateText(u) {
  const parts = [u.disabled ? 'disabled' : 'active'];
  parts.push(u.mfa ? 'authenticator set up' : 'no authenticator');
  return parts.join(', ');
}

section({
  name: 'users', title: 'Users', order: 20,
  async render(me, body) {
    const [users, orgs] = await Promise.all([list('users'), orgOptions()]);
    body.append(table('admin-users', ['User', 'Organisation', 'Role', 'State', ''], users, (tr, u) => {
      tr.dataset.user = u.name;
      if (u.disabled) tr.classList.add('disabled');
      cell(tr, u.name);
      cell(tr, u.org);
      const roleCell = cell(tr, '');
      const select = document.createElement('select');
      select.className = 'role';
      select.setAttribute('aria-label', `Role of ${u.name}`);
      for (const [v, t] of ROLES) {
        const o = document.createElement('option');
        o.value = v;
        o.textContent = t;
        o.selected = v === u.role;
        select.append(o);
      }
      const save = button('Change', () => change(`users/${enc(u.name)}/role`, { role: select.value }), 'plain change-role');
      save.hidden = true;
      // Another administrator changes yours: the relay refuses it from you.
      select.disabled = u.name === me.user;
      select.addEventListener('change', () => { save.hidden = select.value === u.role; });
      roleCell.append(select, save);
      cell(tr, stateText(u), 'state');
      const actions = cell(tr, '', 'row-actions');
      if (u.name === me.user) {
        actions.textContent = 'you';
        return;
      }
      actions.append(guarded('Reset password', `Give ${u.name} a new password? They are signed out everywhere.`, 'Yes, reset',
        () => change(`users/${enc(u.name)}/password`, {}, {
          key: 'password', title: `New password for ${u.name}`, note: 'It is shown only now.',
        }), 'plain reset'));
      if (u.disabled) {
        actions.append(button('Enable', () => change(`users/${enc(u.name)}/enable`), 'plain enable'));
      } else {
        actions.append(guarded('Disable', `Disable ${u.name}? They are signed out at once, everywhere, and cannot sign in until enabled.`,
          'Yes, disable', () => change(`users/${enc(u.name)}/disable`), 'secondary disable'));
      }
      actions.append(guarded('Remove', `Remove ${u.name} for good? Their sessions' history stays.`, 'Yes, remove',
        () => change(`users/${enc(u.name)}/remove`), 'secondary remove'));
    }, 'No user yet.'));
    body.append(form('add-user', 'Add a user', [
      { id: 'name', label: 'User name', hint: 'What they type to sign in.' },
      { id: 'org', label: 'Organisation', type: 'select', options: orgs, value: me.org },
      { id: 'role', label: 'Role', type: 'select', options: ROLES },
    ], 'Add user', (v) => change('users', v, {
      key: 'password', title: `Initial password for ${v.name}`,
      note: 'Give it to them in person or by a channel you trust. It is shown only now.',
    })));
  },
});
