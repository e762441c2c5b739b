import { defineConfig } from 'drizzle-kit';

// `npm run db:generate` writes a new migration from src/db/schema.ts; commit what it writes.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './src/db/migrations',
});
