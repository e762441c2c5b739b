import type { TokenCodec } from './tokens.js';

/**
 * The public URLs that go into outgoing mail. Every one carries an opaque token and
 * nothing else: no address, no name, no campaign title (DESIGN.md, tracking).
 */
export function createTrackingUrls(codec: TokenCodec, publicBaseUrl: string) {
  return {
    /** PUBLIC_BASE_URL, without a trailing slash: links under it are ours (rewrite.ts leaves them alone). */
    base: publicBaseUrl.replace(/\/+$/, ''),
    openPixel: (sendId: string) => `${publicBaseUrl}/t/o/${codec.encode({ kind: 'open', sendId })}.gif`,
    click: (sendId: string, linkIndex: number) => `${publicBaseUrl}/t/c/${codec.encode({ kind: 'click', sendId, linkIndex })}`,
    /** RFC 8058 one-click target (List-Unsubscribe) and the visible link's page. */
    unsubscribe: (recipientId: string, campaignId?: string) => `${publicBaseUrl}/u/${codec.encode({ kind: 'unsubscribe', recipientId, campaignId })}`,
    preferences: (recipientId: string, campaignId?: string) => `${publicBaseUrl}/p/${codec.encode({ kind: 'unsubscribe', recipientId, campaignId })}`,
  };
}

export type TrackingUrls = ReturnType<typeof createTrackingUrls>;
