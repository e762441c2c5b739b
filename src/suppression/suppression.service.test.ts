import { describe, expect, it } from 'vitest';
import { maskEmailAddress } from './recipient-view.js';

describe('maskEmailAddress', () => {
  it('keeps the first character and the domain, nothing else of the local part', () => {
    expect(maskEmailAddress('alice@example.com')).toBe('a•••@example.com');
    expect(maskEmailAddress('A.Very.Long+tag@Example.org')).toBe('A•••@Example.org');
    expect(maskEmailAddress('x@example.com')).toBe('x•••@example.com');
  });

  it('shows nothing for something that is not an address', () => {
    expect(maskEmailAddress('no-at-sign')).toBe('•••');
    expect(maskEmailAddress('@example.com')).toBe('•••');
  });
});
