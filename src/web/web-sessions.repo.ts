import { eq, lte } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { webSessions } from '../db/schema.js';

export type WebSessionRow = typeof webSessions.$inferSelect;

/** The web_sessions table: rows are found by the SHA-256 of the cookie value, never by the value. */
export function createWebSessionsRepo(db: Db) {
  return {
    async insert(values: { workspaceId: string; userId: string; sessionVersion: number; tokenHash: string; expiresAt: Date }): Promise<WebSessionRow> {
      const [row] = await db.insert(webSessions).values(values).returning();
      return row!;
    },

    async findByTokenHash(tokenHash: string): Promise<WebSessionRow | undefined> {
      const [row] = await db.select().from(webSessions).where(eq(webSessions.tokenHash, tokenHash)).limit(1);
      return row;
    },

    async deleteByTokenHash(tokenHash: string): Promise<void> {
      await db.delete(webSessions).where(eq(webSessions.tokenHash, tokenHash));
    },

    /** Every session of a user (account closure, "sign out everywhere"). */
    async deleteForUser(userId: string): Promise<number> {
      const rows = await db.delete(webSessions).where(eq(webSessions.userId, userId)).returning({ id: webSessions.id });
      return rows.length;
    },

    async deleteExpired(now: Date): Promise<void> {
      await db.delete(webSessions).where(lte(webSessions.expiresAt, now));
    },

  };
}

export type WebSessionsRepo = ReturnType<typeof createWebSessionsRepo>;
