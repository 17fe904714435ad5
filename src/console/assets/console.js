// The console's only script (served from /console/assets, CSP script-src 'self'): live updates.
// A list marked data-live listens to its server-sent events and, when told that something
// changed, fetches the page again and swaps the list in, keeping any reason being typed.
'use strict';

function liveList(section) {
  const source = new EventSource(section.dataset.live);
  let refreshing = false;
  let again = false;

  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      // Marked as the page refreshing itself, which is not the person acting: it does not keep an idle session alive.
      const res = await fetch(window.location.href, { headers: { accept: 'text/html', 'x-tasklease-live': '1' }, credentials: 'same-origin', redirect: 'manual' });
      if (res.type === 'opaqueredirect' || res.status !== 200) {
        window.location.reload();
        return;
      }
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const fresh = doc.getElementById(section.id);
      if (!fresh) return;
      const current = document.getElementById(section.id);
      // What a person is typing must survive the swap.
      const typed = new Map();
      let focused = null;
      for (const input of current.querySelectorAll('li[data-id] input[name=reason]')) {
        const id = input.closest('li').dataset.id;
        if (input.value) typed.set(id, input.value);
        if (input === document.activeElement) focused = id;
      }
      current.replaceChildren(...fresh.childNodes);
      for (const [id, value] of typed) {
        const input = current.querySelector(`li[data-id="${CSS.escape(id)}"] input[name=reason]`);
        if (input) input.value = value;
      }
      if (focused) current.querySelector(`li[data-id="${CSS.escape(focused)}"] input[name=reason]`)?.focus();
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed ?? 0) + 1);
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        void refresh();
      }
    }
  }

  source.addEventListener('changed', () => void refresh());
  // The session ended (logout elsewhere, timeout): the page says so by sending the person to the login page.
  source.addEventListener('ended', () => {
    source.close();
    window.location.reload();
  });
  source.addEventListener('ready', () => {
    document.body.dataset.live = 'on';
  });
}

document.addEventListener('DOMContentLoaded', () => {
  for (const section of document.querySelectorAll('[data-live]')) liveList(section);
});
