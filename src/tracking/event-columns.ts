import type { Classification, HitType } from './classify.js';
import type { TrackingEventRow } from './tracking.repo.js';

/**
 * A batch of events by column: one array per column of tracking_events, one entry per event
 * (all of the same length). What the writer prepares and sends to the database thread: a
 * dozen arrays cross and are bound as a dozen parameters, where rows would be a thousand
 * objects built, copied and kept alive on the answering thread (hit-columns.ts says why that
 * matters). `reasons` are shared lists (classify.ts), not one per event.
 */
export interface EventColumns {
  id: string[];
  workspaceId: string[];
  campaignId: string[];
  sendId: string[];
  type: HitType[];
  linkIndex: (number | null)[];
  atMs: number[];
  method: string[];
  ip: (string | null)[];
  userAgent: (string | null)[];
  classification: Classification[];
  reasons: (readonly string[])[];
}

const EVENT_COLUMN_KEYS = ['id', 'workspaceId', 'campaignId', 'sendId', 'type', 'linkIndex', 'atMs', 'method', 'ip', 'userAgent', 'classification', 'reasons'] as const satisfies readonly (keyof EventColumns & keyof TrackingEventRow)[];

export function emptyEventColumns(): EventColumns {
  return { id: [], workspaceId: [], campaignId: [], sendId: [], type: [], linkIndex: [], atMs: [], method: [], ip: [], userAgent: [], classification: [], reasons: [] };
}

/** Rows as columns (callers that hold rows: tracking.repo insertEvents; tests and benches). */
export function eventColumnsOf(rows: readonly TrackingEventRow[]): EventColumns {
  const columns = emptyEventColumns();
  for (const row of rows) for (const key of EVENT_COLUMN_KEYS) (columns[key] as unknown[]).push(row[key]);
  return columns;
}
