import { and, eq, gt, lte } from 'drizzle-orm';
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

    /** Whether the session of this id is still there (not signed out, not expired at `now`). */
    async isLive(id: string, now: Date): Promise<boolean> {
      const [row] = await db.select({ id: webSessions.id }).from(webSessions).where(and(eq(webSessions.id, id), gt(webSessions.expiresAt, now))).limit(1);
      return row !== undefined;
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
