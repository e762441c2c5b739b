import { describe, expect, it } from 'vitest';
import { API_ROUTES } from './api-routes.js';
import { createAccessLookup } from './api-spec.js';

describe('route registry access lookup', () => {
  const accessOf = createAccessLookup(API_ROUTES);

  it('finds the route a request is for: literal segments before parameters, HEAD as GET, any case', () => {
    expect(accessOf('POST', '/api/contacts/import')).toBe('send');
    expect(accessOf('GET', '/api/contacts/3f1c2a9e-0000-4000-8000-000000000000')).toBe('read');
    expect(accessOf('HEAD', '/api/campaigns')).toBe('read');
    expect(accessOf('DELETE', '/API/Suppressions/3f1c2a9e-0000-4000-8000-000000000000/')).toBe('admin');
    expect(accessOf('GET', '/api/messages/3f1c2a9e-0000-4000-8000-000000000000/content')).toBe('session');
  });

  it('knows nothing of a route it does not list (API keys are refused there)', () => {
    expect(accessOf('PUT', '/api/contacts')).toBeUndefined();
    expect(accessOf('GET', '/api/contacts/x/y')).toBeUndefined();
    expect(accessOf('GET', '/api/nowhere')).toBeUndefined();
  });

  it('registered paths are lowercase and unique per method', () => {
    const keys = API_ROUTES.map((r) => `${r.method} ${r.path}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const r of API_ROUTES) expect(r.path.replace(/:[A-Za-z_]+/g, '')).toBe(r.path.replace(/:[A-Za-z_]+/g, '').toLowerCase());
  });
});
