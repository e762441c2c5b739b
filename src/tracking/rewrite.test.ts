import { describe, expect, it } from 'vitest';
import { decodeAttributeValue, extractLinks, renderTrackedHtml } from './rewrite.js';
import { createTokenCodec } from './tokens.js';
import { createTrackingUrls } from './urls.js';

const codec = createTokenCodec([{ version: 'v1', secret: 'r'.repeat(40) }]);
const urls = createTrackingUrls(codec, 'https://t.example.net');
const sendId = '3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f';
const recipientId = '9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d';

describe('extractLinks', () => {
  it('finds absolute http(s) hrefs of links in every quoting style, unique, in order', () => {
    const html = `
      <p><a href="https://shop.example.com/a">A</a>
      <a href='https://shop.example.com/b?x=1&amp;y=2'>B</a>
      <A HREF=https://shop.example.com/c>C</A>
      <a class="btn" data-x='>' href = "http://plain.example.org/d" >D</a>
      <a href="https://shop.example.com/a">A again</a>
      <a href="  https://shop.example.com/e\n  ">spaces</a></p>`;
    expect(extractLinks(html)).toEqual([
      'https://shop.example.com/a',
      'https://shop.example.com/b?x=1&y=2',
      'https://shop.example.com/c',
      'http://plain.example.org/d',
      'https://shop.example.com/e',
    ]);
  });

  it('ignores mailto:, tel:, anchors, relative links, other schemes and links without href', () => {
    const html = `<a href="mailto:a@example.com">m</a><a href="tel:+123">t</a><a href="#top">#</a><a href="/relative">r</a>
      <a href="javascript:alert(1)">j</a><a href="java&#115;cript:alert(1)">j2</a><a href="data:text/html,x">d</a><a name="x">n</a><a href="">e</a>
      <a href="ftp://files.example.com/x">f</a>`;
    expect(extractLinks(html)).toEqual([]);
  });

  it('leaves out our own unsubscribe, preferences and tracking URLs, with or without the base URL', () => {
    const own = [urls.unsubscribe(recipientId), urls.preferences(recipientId, sendId), urls.click(sendId, 1), urls.openPixel(sendId)];
    const html = own.map((u) => `<a href="${u}">x</a>`).join('') + '<a href="https://t.example.net/pricing">ok</a><a href="https://shop.example.com/p/a-long-product-slug-that-is-not-a-token">p</a>';
    expect(extractLinks(html)).toEqual(['https://t.example.net/pricing', 'https://shop.example.com/p/a-long-product-slug-that-is-not-a-token']);
    expect(extractLinks('<a href="https://t.example.net/u/short">x</a>', { publicBaseUrl: 'https://t.example.net' })).toEqual([]);
  });

  it('does not see links in comments, scripts, styles, titles, textareas or other attributes', () => {
    const html = `<!-- <a href="https://hidden.example.com/comment">x</a> -->
      <script>document.write('<a href="https://hidden.example.com/script">')</script>
      <style>a[href="https://hidden.example.com/style"]{}</style>
      <title><a href="https://hidden.example.com/title"></a></title>
      <textarea><a href="https://hidden.example.com/textarea"></a></textarea>
      <img alt='<a href="https://hidden.example.com/attr">' src="https://img.example.com/x.png">
      <div title="<a href=https://hidden.example.com/attr2>">
      <a data-href="https://hidden.example.com/data" href="https://real.example.com/">real</a>`;
    expect(extractLinks(html)).toEqual(['https://real.example.com/']);
  });

  it('walks Outlook conditional comments (their VML buttons are real links in Outlook)', () => {
    const html = `<!--[if mso]><v:roundrect href="https://shop.example.com/buy" style="height:40px"><center>Buy</center></v:roundrect><![endif]-->
      <!--[if !mso]><!--><a href="https://shop.example.com/buy">Buy</a><!--<![endif]-->`;
    expect(extractLinks(html)).toEqual(['https://shop.example.com/buy']);
  });

  it('keeps the first of repeated href attributes, as a browser does', () => {
    expect(extractLinks('<a href="https://first.example.com/" href="https://second.example.com/">x</a>')).toEqual(['https://first.example.com/']);
  });

  it('decodes character references in attribute values the way browsers do', () => {
    expect(decodeAttributeValue('a=1&amp;b=2&#38;c=3&#x26;d')).toBe('a=1&b=2&c=3&d');
    expect(decodeAttributeValue('?x=1&ampy')).toBe('?x=1&ampy'); // legacy reference followed by a letter stays
    expect(decodeAttributeValue('?copy=1&amp=2')).toBe('?copy=1&amp=2');
    expect(decodeAttributeValue('&#0;&#xD800;')).toBe('\ufffd\ufffd');
  });
});

describe('renderTrackedHtml', () => {
  const linkIndexByUrl = new Map([
    ['https://shop.example.com/a', 0],
    ['https://shop.example.com/b?x=1&y=2', 1],
  ]);

  it('rewrites stored links to click URLs, keeps everything else byte for byte, and adds pixel and honeypot before </body>', () => {
    const html = `<html><body><p>Hi <a class="x" href="https://shop.example.com/a">A</a> and <a href='https://shop.example.com/b?x=1&amp;y=2'>B</a>
      and <a href="https://elsewhere.example.com/">not stored</a> and <a href="mailto:x@example.com">mail</a></p></body></html>`;
    const out = renderTrackedHtml(html, { sendId, linkIndexByUrl, honeypotIndex: 2, urls });
    expect(out).toContain(`<a class="x" href="${urls.click(sendId, 0)}">A</a>`);
    expect(out).toContain(`<a href="${urls.click(sendId, 1)}">B</a>`);
    expect(out).toContain('<a href="https://elsewhere.example.com/">not stored</a>');
    expect(out).toContain('<a href="mailto:x@example.com">mail</a>');
    expect(out).toContain(`<img src="${urls.openPixel(sendId)}" width="1" height="1" alt="" style="display:none">`);
    const honeypot = /<a href="([^"]+)" tabindex="-1" aria-hidden="true" rel="nofollow" style="display:none!important;[^"]*"><\/a>/.exec(out);
    expect(honeypot?.[1]).toBe(urls.click(sendId, 2));
    expect(out.indexOf('<img')).toBeLessThan(out.indexOf('</body>'));
    expect(out.endsWith('</body></html>')).toBe(true);
    // Nothing but hrefs changed before the insertion point.
    expect(out.replace(/href="[^"]*"/g, 'href').replace(/href='[^']*'/g, 'href').split('<img')[0]).toBe(
      html.replace(/href="[^"]*"/g, 'href').replace(/href='[^']*'/g, 'href').split('</body>')[0],
    );
  });

  it('handles unquoted hrefs and documents without a body, and no honeypot when none is stored', () => {
    const out = renderTrackedHtml('<a href=https://shop.example.com/a>A</a>', { sendId, linkIndexByUrl, urls });
    expect(out).toBe(`<a href="${urls.click(sendId, 0)}">A</a><img src="${urls.openPixel(sendId)}" width="1" height="1" alt="" style="display:none">`);
  });

  it('round-trips with extractLinks: every extracted link is rewritten, the click URLs decode to the right index', () => {
    const html = '<a href="https://a.example.com/1">1</a><a href="https://a.example.com/2">2</a><!--[if mso]><v:roundrect href="https://a.example.com/2"></v:roundrect><![endif]-->';
    const links = extractLinks(html);
    const out = renderTrackedHtml(html, { sendId, linkIndexByUrl: new Map(links.map((url, i) => [url, i])), urls });
    expect(extractLinks(out)).toEqual([]);
    const clicks = [...out.matchAll(/\/t\/c\/([A-Za-z0-9_-]+)/g)].map((m) => codec.decode(m[1]!));
    expect(clicks).toEqual([
      { kind: 'click', sendId, linkIndex: 0 },
      { kind: 'click', sendId, linkIndex: 1 },
      { kind: 'click', sendId, linkIndex: 1 },
    ]);
  });

  it('stops cleanly at an unterminated tag and still appends the pixel', () => {
    const out = renderTrackedHtml('<p>Hello <a href="https://shop.example.com/a', { sendId, linkIndexByUrl, urls });
    expect(out.startsWith('<p>Hello <a href="https://shop.example.com/a')).toBe(true);
    expect(out).toContain('/t/o/');
  });
});
