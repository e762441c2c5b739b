import { describe, expect, it } from 'vitest';
import { redactUrl } from './logger.js';

describe('redactUrl', () => {
  it.each([
    ['/u/AbC_123-xyz', '/u/[token]'],
    ['/p/AbC_123?x=1', '/p/[token]?x=1'],
    ['/t/o/AbC.gif', '/t/o/[token]'],
    ['/t/c/AbC', '/t/c/[token]'],
    ['/api/gmail/callback?code=4/0Ab&state=eyJ.x.y&scope=a', '/api/gmail/callback?code=[redacted]&state=[redacted]&scope=a'],
    ['/api/contacts/123?q=ada', '/api/contacts/123?q=ada'],
  ])('%s → %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});
