import { SafeHtml, html } from '../web/html.js';

export { SafeHtml, escapeHtml, html } from '../web/html.js';

const STYLE = `
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #202124; background: #f6f8fc; }
  header { background: #fff; border-bottom: 1px solid #dadce0; padding: 12px 24px; display: flex; gap: 16px; align-items: baseline; }
  header a { color: inherit; text-decoration: none; font-weight: 600; }
  header small { color: #5f6368; }
  main { max-width: 1000px; margin: 24px auto; padding: 0 24px; }
  .card { background: #fff; border: 1px solid #dadce0; border-radius: 8px; padding: 16px 20px; margin-bottom: 16px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
  tr.unread td { font-weight: 600; }
  .label { display: inline-block; font-size: 11px; padding: 1px 6px; margin-right: 4px; border-radius: 4px; background: #e8eaed; font-weight: 400; }
  .muted { color: #5f6368; }
  iframe { width: 100%; min-height: 420px; border: 1px solid #dadce0; border-radius: 4px; background: #fff; }
  pre { white-space: pre-wrap; word-break: break-word; background: #f8f9fa; padding: 12px; border-radius: 4px; }
  button { font: inherit; padding: 6px 16px; border-radius: 4px; border: 1px solid #dadce0; background: #fff; cursor: pointer; }
  button.primary { background: #1a73e8; color: #fff; border-color: #1a73e8; }
  input, select, textarea { font: inherit; padding: 6px 8px; border: 1px solid #dadce0; border-radius: 4px; }
  label { display: block; margin: 8px 0 4px; }
`;

export function page(title: string, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Gmail sandbox</title>
<style>${new SafeHtml(STYLE)}</style>
</head>
<body>
<header><a href="/">Gmail sandbox</a><small>in-memory stand-in for Google OAuth and Gmail; nothing here leaves this machine except pushes and unsubscribe posts you trigger</small></header>
<main>
${body}
</main>
</body>
</html>`.value;
}

/**
 * A person should see the mail as a recipient would: the email's own HTML in an
 * iframe with no scripts and no access to this page, links opening in a new tab.
 * The `srcdoc` attribute is escaped like any other value.
 */
export function emailFrame(emailHtml: string): SafeHtml {
  const document = `<!doctype html><html><head><meta charset="utf-8"><base target="_blank"></head><body>${emailHtml}</body></html>`;
  return html`<iframe title="message body" sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" srcdoc="${document}"></iframe>`;
}
