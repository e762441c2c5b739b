import type { Express } from 'express';
import { expect } from 'vitest';
import { API_ROUTES } from '../../src/http/api-routes.js';

interface Layer {
  rawPath?: unknown;
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** Every method + path the Express app registers, walking mounted routers (`/api`, `/webhooks`, `/`). */
export function registeredRoutes(app: Express): { method: string; path: string }[] {
  const routes: { method: string; path: string }[] = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods)) {
          if (method !== '_all') routes.push({ method: method.toUpperCase(), path: `${prefix}${layer.route.path}` });
        }
      } else if (layer.handle?.stack) {
        const mount = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
        walk(layer.handle.stack, `${prefix}${mount}`);
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
  const seen = new Set<string>();
  return routes.filter((r) => !seen.has(`${r.method} ${r.path}`) && seen.add(`${r.method} ${r.path}`));
}

/** `GET /api/contacts/:id`: how the route tables of the tests name a route. */
export const routeKey = (route: { method: string; path: string }) => `${route.method.toUpperCase()} ${route.path}`;

/**
 * The registry's (src/http/api-routes.ts) /api routes that need a caller, by key. The tests walk
 * these, not a list of their own, so a route added to the registry is one they must say something about.
 */
export function authenticatedApiRoutes(): string[] {
  return API_ROUTES.filter((r) => r.path.startsWith('/api/') && r.access !== 'public').map(routeKey);
}

/** The registry's public /api routes (no token, no key). */
export function publicApiRoutes(): string[] {
  return API_ROUTES.filter((r) => r.path.startsWith('/api/') && r.access === 'public').map(routeKey);
}

/**
 * Fails, naming each route, when a test's table has no expectation for a registry route
 * (`missing`) or keeps one for a route the registry no longer has (`stale`).
 */
export function expectEveryRouteCovered(table: string, registry: readonly string[], covered: Iterable<string>): void {
  const coveredSet = new Set(covered);
  const registrySet = new Set(registry);
  const missing = registry.filter((key) => !coveredSet.has(key));
  const stale = [...coveredSet].filter((key) => !registrySet.has(key));
  expect(missing, `registry routes with no expectation in ${table} (add each there): ${missing.join(', ')}`).toEqual([]);
  expect(stale, `${table} lists routes the registry does not have: ${stale.join(', ')}`).toEqual([]);
}
