import { html, type SafeHtml } from './html.js';

/** A moment as people read it on a page: minutes, UTC, always the same shape. */
export const when = (date: Date | string | null | undefined) => (date ? `${new Date(date).toISOString().replace('T', ' ').slice(0, 16)} UTC` : '—');

/** A contact's name for headings and lists: the name when there is one, else the address. */
export const contactName = (contact: { email: string; firstName: string | null; lastName: string | null }) =>
  [contact.firstName, contact.lastName].filter(Boolean).join(' ') || contact.email;

/** "Previous / next" for keyset-paged lists: the next cursor only (the API pages forward). */
export function pager(path: string, params: Record<string, string | undefined>, nextCursor: string | null, isFirstPage: boolean): SafeHtml {
  const keep = Object.fromEntries(Object.entries(params).filter(([, v]) => v)) as Record<string, string>;
  const first = `${path}?${new URLSearchParams(keep)}`;
  const next = nextCursor ? `${path}?${new URLSearchParams({ ...keep, cursor: nextCursor })}` : undefined;
  return html`<nav class="pager" aria-label="Pages">${isFirstPage ? '' : html`<a href="${first}">First page</a>`}${next ? html`<a href="${next}" rel="next">Next page</a>` : ''}</nav>`;
}
