import { html, SafeHtml } from './html.js';

const STYLE = `
  body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  main { max-width: 640px; margin: 48px auto; padding: 24px 28px; background: #fff; border: 1px solid #d0d7de; border-radius: 10px; }
  h1 { font-size: 22px; margin-top: 0; }
  li { margin: 6px 0; }
  .actions { margin-top: 24px; display: flex; gap: 12px; align-items: center; }
  a.button, button { font: inherit; padding: 8px 18px; border-radius: 6px; border: 1px solid #1f6feb; background: #1f6feb; color: #fff; text-decoration: none; cursor: pointer; }
  .muted { color: #59636e; font-size: 14px; }
`;

/** The frame of every server-rendered page of ours: small, no scripts, no external assets. */
export function renderPage(title: string, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${title}</title>
<style>${new SafeHtml(STYLE)}</style>
</head>
<body><main>${body}</main></body>
</html>`.value;
}
