import { describe, expect, it } from 'vitest';
import { trustProxySetting } from '../../src/http/express-app.js';

describe('TRUST_PROXY', () => {
  it.each([
    ['2', 2],
    ['true', true],
    ['false', false],
    ['loopback', 'loopback'],
    ['10.0.0.0/8, loopback', '10.0.0.0/8, loopback'],
  ])('%j means %j to Express', (value, expected) => {
    expect(trustProxySetting(value)).toBe(expected);
  });
});
