import { describe, expect, it } from 'vitest';
import { agentKind, burstThreshold, createClassifier, inLinkBurst, type HitFacts } from './classify.js';

const UA = {
  gmailProxy: 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)',
  yahooProxy: 'YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html',
  appleMailMac: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)',
  appleMailIphone: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
  outlookWindows: 'Mozilla/4.0 (compatible; ms-office; MSOffice 16)',
  outlookDesktop: 'Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)',
  officeDiscovery: 'Microsoft Office Existence Discovery',
  thunderbird: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0',
  chrome: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  edge: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51',
  firefox: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0',
  safariIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  headlessChrome: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36',
  curl: 'curl/8.5.0',
  pythonRequests: 'python-requests/2.31.0',
  goHttp: 'Go-http-client/1.1',
  barracuda: 'Barracuda Sentinel (EE)',
  proofpoint: 'Mozilla/5.0 (compatible; Proofpoint URL Defense)',
  mimecast: 'Mozilla/5.0 (compatible; Mimecast URL Protect)',
};

const APPLE_IP = '172.224.226.7';
const APPLE_IP6 = '2a02:26f7:b3c0:4000::17';
const HOME_IP = '203.0.113.9';
const SENT = Date.UTC(2026, 10, 3, 9, 0, 0);
const LATER = SENT + 3600_000;

const classify = createClassifier({ isAppleMppIp: (ip) => ip === APPLE_IP || ip === APPLE_IP6 });
const hit = (over: Partial<HitFacts>): HitFacts => ({ type: 'open', method: 'GET', atMs: LATER, ip: HOME_IP, userAgent: UA.chrome, sentAtMs: SENT, ...over });

describe('classification table (real user agents)', () => {
  it.each([
    // opens
    ['open, Gmail image proxy', hit({ userAgent: UA.gmailProxy, ip: '66.249.84.10' }), 'unknown', ['google_image_proxy']],
    ['open, Yahoo mail proxy', hit({ userAgent: UA.yahooProxy }), 'unknown', ['yahoo_mail_proxy']],
    ['open, Apple Mail through Mail Privacy Protection (IPv4)', hit({ userAgent: UA.appleMailMac, ip: APPLE_IP }), 'machine', ['apple_mpp_ip']],
    ['open, Apple Mail through Mail Privacy Protection (IPv6)', hit({ userAgent: UA.appleMailIphone, ip: APPLE_IP6 }), 'machine', ['apple_mpp_ip']],
    ['open, Safari through iCloud Private Relay (Apple address, Safari agent: a person browsing, not MPP)', hit({ userAgent: UA.safariIos, ip: APPLE_IP }), 'human', ['no_machine_signal']],
    ['open, Safari through Private Relay 3 s after sending', hit({ userAgent: UA.safariIos, ip: APPLE_IP6, atMs: SENT + 3_000 }), 'machine', ['too_soon_after_send']],
    ['open, Apple Mail without MPP (home address)', hit({ userAgent: UA.appleMailMac }), 'human', ['no_machine_signal']],
    ['open, Outlook for Windows', hit({ userAgent: UA.outlookWindows }), 'human', ['no_machine_signal']],
    ['open, Outlook desktop', hit({ userAgent: UA.outlookDesktop }), 'human', ['no_machine_signal']],
    ['open, Thunderbird', hit({ userAgent: UA.thunderbird }), 'human', ['no_machine_signal']],
    ['open, webmail in Firefox', hit({ userAgent: UA.firefox }), 'human', ['no_machine_signal']],
    ['open, curl', hit({ userAgent: UA.curl }), 'machine', ['bot_user_agent']],
    ['open, HEAD from a browser agent', hit({ method: 'HEAD' }), 'machine', ['head_request']],
    ['open, no user agent', hit({ userAgent: undefined }), 'unknown', ['no_user_agent']],
    ['open, 3 s after sending', hit({ atMs: SENT + 3_000 }), 'machine', ['too_soon_after_send']],
    ['open, Gmail proxy 2 s after sending (prefetch)', hit({ userAgent: UA.gmailProxy, atMs: SENT + 2_000 }), 'machine', ['too_soon_after_send', 'google_image_proxy']],
    ['open, send not marked sent yet (null) is judged without timing', hit({ sentAtMs: null }), 'human', ['no_machine_signal']],
    // clicks
    ['click, Chrome', hit({ type: 'click' }), 'human', ['no_machine_signal']],
    ['click, Edge', hit({ type: 'click', userAgent: UA.edge }), 'human', ['no_machine_signal']],
    ['click, Safari through iCloud Private Relay (Apple address is not a machine for clicks)', hit({ type: 'click', userAgent: UA.safariIos, ip: APPLE_IP }), 'human', ['no_machine_signal']],
    ['click, Outlook Safe Links time-of-click check (ms-office)', hit({ type: 'click', userAgent: UA.outlookWindows }), 'machine', ['scanner_user_agent']],
    ['click, Office link probe', hit({ type: 'click', userAgent: UA.officeDiscovery }), 'machine', ['scanner_user_agent']],
    ['click, Safe Links detonation (Chrome agent, 4 s after sending)', hit({ type: 'click', atMs: SENT + 4_000 }), 'machine', ['too_soon_after_send']],
    ['click, scanner with a browser agent hitting every link', hit({ type: 'click', linkBurst: true }), 'machine', ['all_links_at_once']],
    ['click, Barracuda', hit({ type: 'click', userAgent: UA.barracuda }), 'machine', ['scanner_user_agent']],
    ['click, Proofpoint', hit({ type: 'click', userAgent: UA.proofpoint }), 'machine', ['scanner_user_agent']],
    ['click, Mimecast', hit({ type: 'click', userAgent: UA.mimecast }), 'machine', ['scanner_user_agent']],
    ['click, headless Chrome', hit({ type: 'click', userAgent: UA.headlessChrome }), 'machine', ['bot_user_agent']],
    ['click, curl', hit({ type: 'click', userAgent: UA.curl }), 'machine', ['bot_user_agent']],
    ['click, python-requests', hit({ type: 'click', userAgent: UA.pythonRequests }), 'machine', ['bot_user_agent']],
    ['click, Go http client', hit({ type: 'click', userAgent: UA.goHttp }), 'machine', ['bot_user_agent']],
    ['click, no user agent', hit({ type: 'click', userAgent: undefined }), 'machine', ['no_user_agent']],
    ['click, HEAD', hit({ type: 'click', method: 'HEAD' }), 'machine', ['head_request']],
    ['click, same client as a HEAD or honeypot hit of the send', hit({ type: 'click', sameClientAsMachine: true }), 'machine', ['same_client_as_machine']],
    ['open, sameClientAsMachine is for clicks only', hit({ sameClientAsMachine: true }), 'human', ['no_machine_signal']],
    ['click, the honeypot (from a browser agent)', hit({ type: 'click', honeypot: true }), 'machine', ['honeypot']],
    ['click, Gmail proxy agent on a link', hit({ type: 'click', userAgent: UA.gmailProxy }), 'machine', ['google_image_proxy']],
  ] as const)('%s → %s %j', (_name, facts, classification, reasons) => {
    expect(classify(facts)).toEqual({ classification, reasons });
  });

  it('collects every machine reason that applies', () => {
    expect(classify(hit({ type: 'click', method: 'HEAD', userAgent: UA.curl, honeypot: true, atMs: SENT + 1_000 }))).toEqual({
      classification: 'machine',
      reasons: ['head_request', 'honeypot', 'bot_user_agent', 'too_soon_after_send'],
    });
  });

  it('agent kinds come from our table first, isbot second (isbot alone would call the Gmail proxy a bot)', () => {
    expect(agentKind(UA.gmailProxy)).toBe('google_image_proxy');
    expect(agentKind(UA.barracuda)).toBe('scanner');
    expect(agentKind(UA.outlookWindows)).toBe('office');
    expect(agentKind(UA.curl)).toBe('bot');
    expect(agentKind(UA.chrome)).toBe('client');
    expect(agentKind('   ')).toBe('none');
  });
});

describe('every link at once', () => {
  it('needs at least two links, and at most three distinct ones', () => {
    expect(burstThreshold(0)).toBeUndefined();
    expect(burstThreshold(1)).toBeUndefined();
    expect(burstThreshold(2)).toBe(2);
    expect(burstThreshold(3)).toBe(3);
    expect(burstThreshold(12)).toBe(3);
  });

  it('finds a window of one second holding the required distinct links around the hit', () => {
    const scanner = [
      { linkIndex: 0, atMs: 1_000 },
      { linkIndex: 1, atMs: 1_200 },
      { linkIndex: 2, atMs: 1_900 },
    ];
    for (const h of scanner) expect(inLinkBurst(scanner, h.atMs, 3)).toBe(true);
    // A person: the same three links over a minute.
    const person = [
      { linkIndex: 0, atMs: 1_000 },
      { linkIndex: 1, atMs: 20_000 },
      { linkIndex: 2, atMs: 61_000 },
    ];
    for (const h of person) expect(inLinkBurst(person, h.atMs, 3)).toBe(false);
    // Spread over 1.8 s: no one-second window holds all three.
    const spread = [
      { linkIndex: 0, atMs: 1_000 },
      { linkIndex: 1, atMs: 1_900 },
      { linkIndex: 2, atMs: 2_800 },
    ];
    expect(inLinkBurst(spread, 1_900, 3)).toBe(false);
    // The same link twice is one link.
    expect(inLinkBurst([{ linkIndex: 0, atMs: 0 }, { linkIndex: 0, atMs: 10 }], 10, 2)).toBe(false);
  });
});
