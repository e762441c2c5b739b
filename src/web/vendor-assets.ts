import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Router } from 'express';

/*
 * Third-party browser code served from our own origin (no CDN: the CSP allows only 'self',
 * and a results page must not tell anyone else who looked at it). Only the named files of
 * each package are reachable, straight from node_modules: no build step, no copy.
 */

const require = createRequire(import.meta.url);
const uplotDist = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));

const FILES: Record<string, string> = {
  '/assets/vendor/uplot/uPlot.iife.min.js': join(uplotDist, 'uPlot.iife.min.js'),
  '/assets/vendor/uplot/uPlot.min.css': join(uplotDist, 'uPlot.min.css'),
};

export function vendorAssets(): Router {
  const router = Router();
  for (const [path, file] of Object.entries(FILES)) {
    router.get(path, (_req, res) => res.sendFile(file, { maxAge: '1h' }));
  }
  return router;
}
