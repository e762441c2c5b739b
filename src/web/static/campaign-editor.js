// Live preview for the campaign editor: presses the form's Preview button (which posts the
// unsaved form into the preview frame) shortly after each edit. Without JavaScript the
// button does the same by hand.
(function () {
  'use strict';
  var form = document.querySelector('form[data-live-preview]');
  var button = document.querySelector('[data-preview-button]');
  if (!form || !button || typeof form.requestSubmit !== 'function') return;
  var timer = null;
  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      form.requestSubmit(button);
    }, 400);
  }
  form.addEventListener('input', refresh);
  form.addEventListener('change', refresh);
  // The contact chooser sits outside the form element (form="…"), so listen to it too.
  var chooser = document.querySelector('select[name="previewContactId"]');
  if (chooser) chooser.addEventListener('change', refresh);
  form.requestSubmit(button);
})();
