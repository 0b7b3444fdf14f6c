// The pages a signed-in user moves between. Each page module registers itself here with
// the element it shows, who may see it, the location hash that names it and what to do
// when it is shown; this module builds the tabs for the user's role and shows the page
// the hash names. It knows nothing of any page's content.
import { $, say } from './common.js';

// name: what body[data-view] says while the page is shown; el: the element to show;
// tab: the tab's label (none for a detail page); hash: '#name' (or prefix: '#name/' for a
// page about one thing, whose tab is `under`); order: the tab's position; allowed(me);
// home(me): whether it is the first page for this user; start(me) once after sign-in,
// stop() at sign-out, enter(me, arg) each time it is shown.
const pages = [];

export function register(page) {
  pages.push(page);
  pages.sort((a, b) => (a.order ?? 100) - (b.order ?? 100));
}

let me = null;

function pick(allowed) {
  const h = location.hash;
  return allowed.find((p) => p.prefix && h.startsWith(p.prefix))
    || allowed.find((p) => p.hash && h === p.hash)
    || allowed.find((p) => p.home && p.home(me))
    || allowed.find((p) => p.tab);
}

export function view() {
  if (!me) return;
  const allowed = pages.filter((p) => p.allowed(me));
  const page = pick(allowed);
  for (const p of pages) $(p.el).hidden = p !== page;
  for (const a of $('tabs').children) a.classList.toggle('current', page && (a.dataset.page === page.name || a.dataset.page === page.under));
  if (!page) return;
  document.body.dataset.view = page.name;
  if (page.enter) page.enter(me, page.prefix ? decodeURIComponent(location.hash.slice(page.prefix.length)) : undefined);
}
window.addEventListener('hashchange', () => { say(''); view(); });

export function signedIn(account) {
  me = account;
  document.body.dataset.role = me.role;
  const tabs = pages.filter((p) => p.tab && p.allowed(me)).map((p) => {
    const a = document.createElement('a');
    a.id = `tab-${p.name}`;
    a.href = p.hash;
    a.dataset.page = p.name;
    a.textContent = p.tab;
    return a;
  });
  $('tabs').replaceChildren(...tabs);
  // Someone with one page has nothing to choose between.
  $('tabs').hidden = tabs.length < 2;
  for (const p of pages) if (p.start && p.allowed(me)) p.start(me);
  view();
}

export function signedOut() {
  if (me) for (const p of pages) if (p.stop) p.stop();
  me = null;
}
