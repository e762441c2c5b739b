import { describe, expect, it } from 'vitest';
import { normalizeEmailAddress } from './email-address.js';

describe('normalizeEmailAddress', () => {
  it.each([
    ['  Ada@Example.COM ', 'Ada@example.com'],
    ['bob.smith+crm@Sub.Example.org', 'bob.smith+crm@sub.example.org'],
  ])('normalizes %j to %j', (raw, expected) => {
    expect(normalizeEmailAddress(raw)).toBe(expected);
  });

  it.each(['', 'plainaddress', '@example.com', 'ada@', 'ada@example.com\r\nBcc: x@y.z', 'a b@example.com', 'ada@@example.com', `${'a'.repeat(250)}@example.com`])(
    'rejects %j',
    (raw) => {
      expect(normalizeEmailAddress(raw)).toBeUndefined();
    },
  );
});
