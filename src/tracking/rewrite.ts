import type { TrackingUrls } from './urls.js';

/*
 * Links and pixel for campaign HTML. The campaign worker stores a campaign's links once
 * (extractLinks → campaign_links, plus one honeypot row) and renders each send's body
 * with renderTrackedHtml.
 *
 * The HTML is walked by a small tokenizer that follows the HTML tokenizer's rules for
 * what matters here — comments, doctype/bogus comments, raw-text elements (script,
 * style, textarea, title…), and start-tag attributes with double-, single- or unquoted
 * values — so an href inside a comment, a script or another attribute's value is never
 * mistaken for a link. Outlook conditional comments (<!--[if mso]> … <![endif]-->) are
 * walked too: their content is real markup to Outlook. Only href attribute values are
 * replaced; every other byte is kept.
 */

interface Attribute {
  name: string;
  /** Decoded value ('' for an attribute without a value). */
  value: string;
  /** Source span of the raw value, quotes included; -1 when there is none. */
  valueStart: number;
  valueEnd: number;
}

interface Tag {
  kind: 'start' | 'end';
  name: string;
  start: number;
  end: number;
  attributes: Attribute[];
}

const RAW_TEXT = new Set(['script', 'style', 'xmp', 'iframe', 'noembed', 'noframes', 'textarea', 'title']);
const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f';
const isAlpha = (c: string | undefined) => c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));

const NAMED: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
  sol: '/',
  colon: ':',
  equals: '=',
  quest: '?',
  num: '#',
  percnt: '%',
  period: '.',
  comma: ',',
  excl: '!',
  lpar: '(',
  rpar: ')',
  plus: '+',
  commat: '@',
  lowbar: '_',
  hyphen: '-',
  dash: '‐',
  tab: '\t',
  newline: '\n',
};
/** Named references a browser also decodes without the semicolon (when not followed by = or an alphanumeric). */
const LEGACY = new Set(['amp', 'lt', 'gt', 'quot', 'nbsp']);

/** Character references in an attribute value, decoded as a browser does (the cases that occur in URLs). */
export function decodeAttributeValue(raw: string): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*)(;?)/g, (match, ref: string, semi: string, offset: number) => {
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      if (!Number.isFinite(code) || code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return '\ufffd';
      return String.fromCodePoint(code);
    }
    const name = ref;
    if (semi) return NAMED[name] ?? match;
    const next = raw[offset + match.length];
    if (LEGACY.has(name) && !(next === '=' || (next !== undefined && /[A-Za-z0-9]/.test(next)))) return NAMED[name]!;
    return match;
  });
}

/** Walks the tags of a document. Stops quietly at an unterminated tag (a browser drops it too). */
function* tags(html: string): Generator<Tag> {
  const length = html.length;
  let i = 0;
  while (i < length) {
    const lt = html.indexOf('<', i);
    if (lt < 0) return;
    const next = html[lt + 1];
    if (html.startsWith('<!--', lt)) {
      if (html.startsWith('[if', lt + 4)) {
        // Outlook conditional comment: skip the condition, walk the content.
        const close = html.indexOf(']>', lt + 4);
        i = close < 0 ? length : close + 2;
        continue;
      }
      if (html.startsWith('<!-->', lt)) {
        i = lt + 5;
        continue;
      }
      if (html.startsWith('<!--->', lt)) {
        i = lt + 6;
        continue;
      }
      const close = html.indexOf('-->', lt + 4);
      i = close < 0 ? length : close + 3;
      continue;
    }
    if (next === '!' || next === '?') {
      // Doctype, CDATA, <![endif]> and other bogus comments end at the first '>'.
      const close = html.indexOf('>', lt + 2);
      i = close < 0 ? length : close + 1;
      continue;
    }
    if (next === '/') {
      if (!isAlpha(html[lt + 2])) {
        const close = html.indexOf('>', lt + 2);
        i = close < 0 ? length : close + 1;
        continue;
      }
      let j = lt + 2;
      while (j < length && !isSpace(html[j]) && html[j] !== '/' && html[j] !== '>') j += 1;
      const name = html.slice(lt + 2, j).toLowerCase();
      const close = html.indexOf('>', j);
      if (close < 0) return;
      yield { kind: 'end', name, start: lt, end: close + 1, attributes: [] };
      i = close + 1;
      continue;
    }
    if (!isAlpha(next)) {
      i = lt + 1;
      continue;
    }

    let j = lt + 1;
    while (j < length && !isSpace(html[j]) && html[j] !== '/' && html[j] !== '>') j += 1;
    const name = html.slice(lt + 1, j).toLowerCase();
    const attributes: Attribute[] = [];
    let end = -1;
    while (j < length) {
      while (j < length && (isSpace(html[j]) || html[j] === '/')) j += 1;
      if (j >= length) break;
      if (html[j] === '>') {
        end = j + 1;
        break;
      }
      const nameStart = j;
      j += 1; // a leading '=' belongs to the name
      while (j < length && !isSpace(html[j]) && html[j] !== '/' && html[j] !== '>' && html[j] !== '=') j += 1;
      const attributeName = html.slice(nameStart, j).toLowerCase();
      let k = j;
      while (k < length && isSpace(html[k])) k += 1;
      if (html[k] !== '=') {
        attributes.push({ name: attributeName, value: '', valueStart: -1, valueEnd: -1 });
        continue;
      }
      j = k + 1;
      while (j < length && isSpace(html[j])) j += 1;
      const quote = html[j];
      if (quote === '"' || quote === "'") {
        const close = html.indexOf(quote, j + 1);
        if (close < 0) return;
        attributes.push({ name: attributeName, value: decodeAttributeValue(html.slice(j + 1, close)), valueStart: j, valueEnd: close + 1 });
        j = close + 1;
      } else if (quote === '>') {
        attributes.push({ name: attributeName, value: '', valueStart: -1, valueEnd: -1 });
      } else {
        const valueStart = j;
        while (j < length && !isSpace(html[j]) && html[j] !== '>') j += 1;
        attributes.push({ name: attributeName, value: decodeAttributeValue(html.slice(valueStart, j)), valueStart, valueEnd: j });
      }
    }
    if (end < 0) return;
    yield { kind: 'start', name, start: lt, end, attributes };
    i = end;
    if (RAW_TEXT.has(name)) {
      // Skip to the matching end tag: nothing inside is markup.
      const pattern = new RegExp(`</${name}[\\s/>]`, 'gi');
      pattern.lastIndex = end;
      const match = pattern.exec(html);
      i = match ? match.index : length;
    }
  }
}

/** Elements whose href is a link a reader follows: <a>, <area>, and Outlook's VML buttons (v:roundrect…). */
const isLinkElement = (name: string) => name === 'a' || name === 'area' || name.startsWith('v:');

/** The first href of a tag (a browser ignores repeated attributes). */
const hrefOf = (tag: Tag) => tag.attributes.find((a) => a.name === 'href');

/** URL text as a browser reads it: ASCII tab/newline removed, C0 controls and spaces trimmed. */
const cleanUrl = (value: string) => value.replace(/[\t\n\r]/g, '').replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '');

/**
 * Our own tracking and opt-out URLs, recognised by their token's exact shape even when
 * the base URL is not given (tokens.ts: kind and key version bytes, then a fixed length):
 * unsubscribe/preferences 62 characters starting A[w-z0-9_-], open 40 starting A[Q-f],
 * click 43 starting A[g-v]. A customer's own /p/<slug> link does not look like that.
 */
const OUR_PATH = /^\/[up]\/A[w-z0-9_-][A-Za-z0-9_-]{60}$|^\/t\/o\/A[Q-Za-f][A-Za-z0-9_-]{38}(?:\.gif)?$|^\/t\/c\/A[g-v][A-Za-z0-9_-]{41}$/;

export interface LinkOptions {
  /** PUBLIC_BASE_URL: links under it to /u/, /p/ or /t/ are ours and never tracked. */
  publicBaseUrl?: string;
}

/** The trackable URL an href names, or undefined (mailto:, tel:, #anchors, relative, other schemes, our own URLs). */
function trackableUrl(raw: string, options: LinkOptions): string | undefined {
  const url = cleanUrl(raw);
  if (!url || url.startsWith('#')) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined; // relative: mail has no base to resolve it against
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined;
  if (OUR_PATH.test(parsed.pathname)) return undefined;
  if (options.publicBaseUrl) {
    const base = options.publicBaseUrl.replace(/\/+$/, '');
    for (const prefix of ['/u/', '/p/', '/t/']) if (url.startsWith(base + prefix)) return undefined;
  }
  return url;
}

/** Absolute http(s) hrefs of the document's links, unique, in order of appearance. */
export function extractLinks(html: string, options: LinkOptions = {}): string[] {
  const seen = new Set<string>();
  for (const tag of tags(html)) {
    if (tag.kind !== 'start' || !isLinkElement(tag.name)) continue;
    const href = hrefOf(tag);
    const url = href && trackableUrl(href.value, options);
    if (url) seen.add(url);
  }
  return [...seen];
}

const escapeAttribute = (value: string) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface RenderTrackedInput {
  sendId: string;
  /** From the campaign's stored links: URL (as extractLinks returned it) → link index. */
  linkIndexByUrl: ReadonlyMap<string, number>;
  /** The campaign's honeypot link index; no honeypot when absent. */
  honeypotIndex?: number;
  urls: TrackingUrls;
  /** As for extractLinks (our own URLs are left alone either way, since they are not in the map). */
  publicBaseUrl?: string;
}

/**
 * The body as sent to one recipient: every stored link's href replaced by its click URL
 * (links not in the map are left as written), then the open pixel and the hidden
 * honeypot link, before </body> when there is one.
 */
export function renderTrackedHtml(html: string, input: RenderTrackedInput): string {
  const options: LinkOptions = { publicBaseUrl: input.publicBaseUrl };
  const pieces: string[] = [];
  let copied = 0;
  let bodyEnd = -1;
  for (const tag of tags(html)) {
    if (tag.kind === 'end') {
      if (tag.name === 'body') bodyEnd = tag.start;
      continue;
    }
    if (!isLinkElement(tag.name)) continue;
    const href = hrefOf(tag);
    if (!href || href.valueStart < 0) continue;
    const url = trackableUrl(href.value, options);
    const index = url === undefined ? undefined : input.linkIndexByUrl.get(url);
    if (index === undefined) continue;
    pieces.push(html.slice(copied, href.valueStart), `"${escapeAttribute(input.urls.click(input.sendId, index))}"`);
    copied = href.valueEnd;
  }
  const pixel = `<img src="${escapeAttribute(input.urls.openPixel(input.sendId))}" width="1" height="1" alt="" style="display:none">`;
  const honeypot =
    input.honeypotIndex === undefined
      ? ''
      : `<a href="${escapeAttribute(input.urls.click(input.sendId, input.honeypotIndex))}" tabindex="-1" aria-hidden="true" rel="nofollow" style="display:none!important;mso-hide:all;visibility:hidden;font-size:0;line-height:0;max-height:0;max-width:0;overflow:hidden;opacity:0"></a>`;
  const insertAt = bodyEnd >= copied ? bodyEnd : html.length;
  pieces.push(html.slice(copied, insertAt), pixel, honeypot, html.slice(insertAt));
  return pieces.join('');
}
