import { html, SafeHtml } from './html.js';

/** The stylesheet every page links (served under /assets by web.routes.ts; the CSP forbids inline styles). */
export const STYLESHEET_PATH = '/assets/app.css';

function document(title: string, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${title}</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}">
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
</head>
<body>${body}</body>
</html>`.value;
}

/** The frame of every server-rendered page of ours: small, no scripts, no external assets. */
export function renderPage(title: string, body: SafeHtml): string {
  return document(title, html`<main>${body}</main>`);
}

/** What the app frame needs to know about the signed-in person and the deployment. */
export interface AppFrame {
  userEmail: string;
  workspaceName: string;
  csrfToken: string;
  /** The sandbox's inbox pages, when Gmail is the built-in sandbox (shown as a banner). */
  sandboxInboxUrl?: string;
  /** Which navigation entry this page belongs to. */
  section?: NavSection;
  /** A one-line message carried over a redirect (`?notice=`), from a fixed list, never free text. */
  notice?: string;
  /** Every workspace the person belongs to, and which one this session is in: a switcher when there are several. */
  workspaces: { workspaceId: string; name: string }[];
  workspaceId: string;
}

export type NavSection = 'mailboxes' | 'contacts' | 'campaigns' | 'suppressions' | 'settings' | 'account';

const NAV: { section: NavSection; href: string; label: string }[] = [
  { section: 'mailboxes', href: '/app/mailboxes', label: 'Mailboxes' },
  { section: 'contacts', href: '/app/contacts', label: 'Contacts' },
  { section: 'campaigns', href: '/app/campaigns', label: 'Campaigns' },
  { section: 'suppressions', href: '/app/suppressions', label: 'Suppression list' },
  { section: 'settings', href: '/app/settings', label: 'Settings' },
  { section: 'account', href: '/app/account', label: 'Account' },
];

/** A form's hidden CSRF field (see csrf.ts); every form of the app carries one. */
export const csrfField = (token: string) => html`<input type="hidden" name="_csrf" value="${token}">`;

/** For a person in several workspaces: choose another one (account.pages.ts starts a session there). */
function workspaceSwitcher(frame: AppFrame) {
  if (frame.workspaces.length < 2) return '';
  return html`<form method="post" action="/app/account/workspace" class="switch">${csrfField(frame.csrfToken)}<label for="switch-workspace" class="visually-hidden">Workspace</label><select id="switch-workspace" name="workspaceId">${frame.workspaces.map(
    (w) => html`<option value="${w.workspaceId}"${w.workspaceId === frame.workspaceId ? new SafeHtml(' selected') : ''}>${w.name}</option>`,
  )}</select><button type="submit" class="link">Switch workspace</button></form>`;
}

/** The page of a signed-in user: sandbox banner, navigation, sign-out, then the content. */
export function renderAppPage(title: string, frame: AppFrame, body: SafeHtml): string {
  const banner = frame.sandboxInboxUrl
    ? html`<div class="sandbox-banner" role="status">Sandbox mode: Gmail is simulated and no real mail leaves this machine. <a href="${frame.sandboxInboxUrl}">Open the sandbox inboxes</a> to read what recipients got.</div>`
    : '';
  const nav = html`<header class="topbar"><nav aria-label="Main">
<a class="brand" href="/app">inboxtrail</a>
${NAV.map((item) => html`<a href="${item.href}"${item.section === frame.section ? new SafeHtml(' aria-current="page"') : ''}>${item.label}</a>`)}
<span class="who"><span>${frame.userEmail} · ${frame.workspaceName}</span>${workspaceSwitcher(frame)}
<form method="post" action="/signout">${csrfField(frame.csrfToken)}<button type="submit" class="link">Sign out</button></form></span>
</nav></header>`;
  const notice = frame.notice ? html`<p class="notice" role="status">${frame.notice}</p>` : '';
  return document(`${title} · inboxtrail`, html`${banner}${nav}<main class="wide">${notice}${body}</main>`);
}

/** Pages of a signed-out visitor (sign in, sign up, invitations): the plain frame, plus the sandbox banner. */
export function renderPublicPage(title: string, body: SafeHtml, sandboxInboxUrl?: string): string {
  const banner = sandboxInboxUrl
    ? html`<div class="sandbox-banner" role="status">Sandbox mode: Gmail is simulated. <a href="${sandboxInboxUrl}">Sandbox inboxes</a></div>`
    : '';
  return document(`${title} · inboxtrail`, html`${banner}<main>${body}</main>`);
}
