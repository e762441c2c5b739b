import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Opaque tokens for tracking and opt-out URLs: ids and an HMAC-SHA256 tag, never an
 * email address or anything else personal. Layout (then base64url):
 *   [kind 1 byte][key version 1 byte][payload][tag 12 bytes]
 * The key version lets TRACKING_SECRET rotate while every token already sent keeps
 * verifying (old secrets stay in the list). 96-bit tags: forging one is out of reach,
 * and short URLs survive mail clients that wrap long lines.
 */

const TAG_BYTES = 12;
const UUID_BYTES = 16;

export const TOKEN_KINDS = { open: 1, click: 2, unsubscribe: 3 } as const;
export type TokenKind = keyof typeof TOKEN_KINDS;

export type TrackingToken =
  | { kind: 'open'; sendId: string }
  | { kind: 'click'; sendId: string; linkIndex: number }
  /** Unsubscribe and preference center: the recipient row (which outlives campaigns and contacts), and the campaign when known. */
  | { kind: 'unsubscribe'; recipientId: string; campaignId?: string };

export interface TrackingSecret {
  readonly version: string;
  readonly secret: string;
}

const uuidToBytes = (uuid: string) => Buffer.from(uuid.replace(/-/g, ''), 'hex');
/**
 * The canonical text of a 16-byte id, as one flat string: joined with `+` or a template it
 * would be a tree of nine string objects, and a buffered hit keeps its send id for up to a
 * second (every young-generation collection copies what it keeps: hit-columns.ts).
 */
function bytesToUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  const text = Buffer.allocUnsafe(36);
  text.write(hex.slice(0, 8), 0, 'latin1');
  text.write(hex.slice(8, 12), 9, 'latin1');
  text.write(hex.slice(12, 16), 14, 'latin1');
  text.write(hex.slice(16, 20), 19, 'latin1');
  text.write(hex.slice(20), 24, 'latin1');
  text[8] = text[13] = text[18] = text[23] = 0x2d; // '-'
  return text.toString('latin1');
}
const NO_CAMPAIGN = Buffer.alloc(UUID_BYTES);

function payloadOf(token: TrackingToken): Buffer {
  switch (token.kind) {
    case 'open':
      return uuidToBytes(token.sendId);
    case 'click': {
      const index = Buffer.alloc(2);
      index.writeUInt16BE(token.linkIndex);
      return Buffer.concat([uuidToBytes(token.sendId), index]);
    }
    case 'unsubscribe':
      return Buffer.concat([uuidToBytes(token.recipientId), token.campaignId ? uuidToBytes(token.campaignId) : NO_CAMPAIGN]);
  }
}

const PAYLOAD_BYTES: Record<number, number> = { [TOKEN_KINDS.open]: 16, [TOKEN_KINDS.click]: 18, [TOKEN_KINDS.unsubscribe]: 32 };

export function createTokenCodec(secrets: readonly TrackingSecret[]) {
  const keys = new Map<number, Buffer>();
  for (const { version, secret } of secrets) {
    const number = Number(version.replace(/^v/, ''));
    if (!Number.isInteger(number) || number < 0 || number > 255) throw new RangeError('tracking secret versions must be v0…v255');
    keys.set(number, Buffer.from(secret, 'utf8'));
  }
  const current = Number(secrets[secrets.length - 1]!.version.replace(/^v/, ''));
  const tagOf = (key: Buffer, body: Buffer) => createHmac('sha256', key).update(body).digest().subarray(0, TAG_BYTES);

  return {
    encode(token: TrackingToken): string {
      const body = Buffer.concat([Buffer.from([TOKEN_KINDS[token.kind], current]), payloadOf(token)]);
      return Buffer.concat([body, tagOf(keys.get(current)!, body)]).toString('base64url');
    },

    /** The token's contents, or undefined for anything not minted by us with a key we still hold. */
    decode(text: string, expected?: TokenKind): TrackingToken | undefined {
      if (text.length > 96 || !/^[A-Za-z0-9_-]+$/.test(text)) return undefined;
      const bytes = Buffer.from(text, 'base64url');
      // Canonical spelling only: the last character's unused bits must be zero, so one
      // token has exactly one URL (no "several spellings" to dodge a dedup or a log filter).
      if (bytes.toString('base64url') !== text) return undefined;
      const kind = bytes[0];
      const payloadLength = kind === undefined ? undefined : PAYLOAD_BYTES[kind];
      if (payloadLength === undefined || bytes.length !== 2 + payloadLength + TAG_BYTES) return undefined;
      const key = keys.get(bytes[1]!);
      if (!key) return undefined;
      const body = bytes.subarray(0, 2 + payloadLength);
      if (!timingSafeEqual(tagOf(key, body), bytes.subarray(2 + payloadLength))) return undefined;
      const payload = body.subarray(2);
      let token: TrackingToken;
      if (kind === TOKEN_KINDS.open) token = { kind: 'open', sendId: bytesToUuid(payload) };
      else if (kind === TOKEN_KINDS.click) token = { kind: 'click', sendId: bytesToUuid(payload.subarray(0, 16)), linkIndex: payload.readUInt16BE(16) };
      else {
        const campaign = payload.subarray(16);
        token = { kind: 'unsubscribe', recipientId: bytesToUuid(payload.subarray(0, 16)), ...(campaign.equals(NO_CAMPAIGN) ? {} : { campaignId: bytesToUuid(campaign) }) };
      }
      return expected && token.kind !== expected ? undefined : token;
    },
  };
}

export type TokenCodec = ReturnType<typeof createTokenCodec>;
