// A sending campaign's progress without reloading: polls the page's progress.json and
// updates the numbers in place. Stops when the campaign is finished or the tab is hidden.
(function () {
  'use strict';
  var block = document.querySelector('[data-progress-url]');
  if (!block || !window.fetch) return;
  var url = block.getAttribute('data-progress-url');
  var FINISHED = ['completed', 'cancelled', 'draft'];
  var INTERVAL_MS = 2000;

  function set(selector, text) {
    var node = block.querySelector(selector);
    if (node && node.textContent !== text) node.textContent = text;
  }
  function when(value) {
    return value ? new Date(value).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—';
  }

  function poll() {
    if (document.hidden) return schedule();
    fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (response) {
        if (!response.ok) throw new Error('status ' + response.status);
        return response.json();
      })
      .then(function (progress) {
        block.setAttribute('data-status', progress.status);
        set('[data-field="status"]', progress.status);
        set('[data-field="waiting"]', progress.waiting ? ' — ' + progress.waiting : '');
        set('[data-field="nextSendAt"]', when(progress.nextSendAt));
        Object.keys(progress.counts).forEach(function (state) {
          set('[data-count="' + state + '"]', String(progress.counts[state]));
        });
        if (FINISHED.indexOf(progress.status) === -1) schedule();
      })
      .catch(function () {
        // A failed poll (network, signed out) waits longer, then tries again.
        setTimeout(poll, INTERVAL_MS * 5);
      });
  }
  function schedule() {
    setTimeout(poll, INTERVAL_MS);
  }
  if (FINISHED.indexOf(block.getAttribute('data-status')) === -1) schedule();
})();
