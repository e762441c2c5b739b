import { describe, expect, it } from 'vitest';
import { createTokenCodec } from './tokens.js';

const v1 = { version: 'v1', secret: 'a'.repeat(40) };
const v2 = { version: 'v2', secret: 'b'.repeat(40) };
const sendId = '3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f';
const recipientId = '9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d';
const campaignId = '0f1e2d3c-4b5a-4968-8776-655443322110';

describe('tracking tokens', () => {
  const codec = createTokenCodec([v1]);

  it.each([
    { kind: 'open' as const, sendId },
    { kind: 'click' as const, sendId, linkIndex: 7 },
    { kind: 'unsubscribe' as const, recipientId, campaignId },
    { kind: 'unsubscribe' as const, recipientId },
  ])('round-trips %j and carries no readable id', (token) => {
    const text = codec.encode(token);
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(text.length).toBeLessThanOrEqual(64);
    expect(text).not.toContain(sendId.slice(0, 8));
    expect(codec.decode(text)).toEqual(token);
  });

  it('refuses tampered, truncated, extended, foreign and wrong-kind tokens', () => {
    const text = codec.encode({ kind: 'click', sendId, linkIndex: 1 });
    const bytes = Buffer.from(text, 'base64url');
    for (let i = 0; i < bytes.length; i += 1) {
      const flipped = Buffer.from(bytes);
      flipped[i]! ^= 0x01;
      expect(codec.decode(flipped.toString('base64url'))).toBeUndefined();
    }
    expect(codec.decode(text.slice(0, -2))).toBeUndefined();
    expect(codec.decode(`${text}AA`)).toBeUndefined();
    expect(codec.decode('')).toBeUndefined();
    expect(codec.decode('not a token!')).toBeUndefined();
    expect(createTokenCodec([{ version: 'v1', secret: 'c'.repeat(40) }]).decode(text)).toBeUndefined();
    expect(codec.decode(text, 'open')).toBeUndefined();
    expect(codec.decode(text, 'click')).toEqual({ kind: 'click', sendId, linkIndex: 1 });
  });

  it('rotation: new tokens use the newest secret; tokens of older secrets still verify while listed', () => {
    const old = codec.encode({ kind: 'open', sendId });
    const rotated = createTokenCodec([v1, v2]);
    const fresh = rotated.encode({ kind: 'open', sendId });
    expect(fresh).not.toBe(old);
    expect(rotated.decode(old)).toEqual({ kind: 'open', sendId });
    expect(rotated.decode(fresh)).toEqual({ kind: 'open', sendId });
    expect(createTokenCodec([v2]).decode(old)).toBeUndefined();
  });

  it('decodes only the canonical spelling: the unused bits of the last character must be zero', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (const token of [codec.encode({ kind: 'click', sendId, linkIndex: 3 }), codec.encode({ kind: 'unsubscribe', recipientId: sendId })]) {
      expect(codec.decode(token)).toBeDefined();
      const last = alphabet.indexOf(token.at(-1)!);
      const variants = [...alphabet].filter((c, i) => i !== last && Buffer.from(token.slice(0, -1) + c, 'base64url').equals(Buffer.from(token, 'base64url')));
      expect(variants.length).toBeGreaterThan(0);
      for (const c of variants) expect(codec.decode(token.slice(0, -1) + c)).toBeUndefined();
    }
  });
});
