// The compiled app reads its SQL migrations next to dist/src/db/connect.js.
import { cpSync } from 'node:fs';
cpSync('src/db/migrations', 'dist/src/db/migrations', { recursive: true });
