import { describe, expect, it } from 'vitest';
import { mayReportOn } from './signals.js';

/** Which mail systems may report on an address when their notice names no message of ours (signals.ts). */
describe('mayReportOn', () => {
  it("Google's mailer-daemon reports on any address; the address's own organization's mail system on its addresses", () => {
    expect(mayReportOn('mailer-daemon@googlemail.com', 'ann@contoso.test')).toBe(true);
    expect(mayReportOn('postmaster@mx.contoso.test', 'ann@contoso.test')).toBe(true);
    expect(mayReportOn('MAILER-DAEMON@mail.example.co.uk', 'bob@example.co.uk')).toBe(true);
    expect(mayReportOn('postmaster@mx1.acme.com.au', 'cy@sales.acme.com.au')).toBe(true);
  });

  it('nobody else: another organization, a neighbour under a public or private suffix, a person', () => {
    expect(mayReportOn('postmaster@evil.test', 'ann@contoso.test')).toBe(false);
    expect(mayReportOn('postmaster@other.co.uk', 'bob@example.co.uk')).toBe(false);
    // Private suffixes of the Public Suffix List: each name under them is its own organization.
    expect(mayReportOn('postmaster@alice.github.io', 'x@bob.github.io')).toBe(false);
    expect(mayReportOn('postmaster@city.kawasaki.jp', 'x@town.kawasaki.jp')).toBe(false);
    expect(mayReportOn('ann@contoso.test', 'ann@contoso.test')).toBe(false);
    expect(mayReportOn(undefined, 'ann@contoso.test')).toBe(false);
  });
});
