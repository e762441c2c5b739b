import { createHash, randomInt } from 'node:crypto';
import type { SigningKeys } from './signing.js';
import type { HistoryRecord, Mailbox } from './store.js';

/**
 * Gmail `watch` → Cloud Pub/Sub → push subscription, collapsed into one in-process hop:
 * when a watched mailbox changes, each push subscription on the watch's topic gets the
 * Pub/Sub push body, with a Google-style OIDC token as `Authorization: Bearer`.
 */

export const DEFAULT_PUSH_SERVICE_ACCOUNT = 'gmail-push@inboxtrail-sandbox.iam.gserviceaccount.com';

export interface PushSubscriptionInput {
  /** Topic the watch names, `projects/<project>/topics/<topic>`. */
  topicName: string;
  /** Where pushes are POSTed. */
  endpoint: string;
  /** The token's `aud`; Pub/Sub defaults it to the endpoint URL. */
  audience?: string;
  /** The token's `email` (the push service account). */
  serviceAccountEmail?: string;
  /** `projects/<project>/subscriptions/<name>`; derived from the topic when absent. */
  name?: string;
}

export type PushSubscription = Required<PushSubscriptionInput>;

export interface PushTokenInput {
  audience: string;
  email: string;
  issuer?: string;
  expiresInSeconds?: number;
  /** Defaults to now; set to test clock-skew handling. */
  issuedAt?: Date;
}

export interface PushBody {
  message: {
    data: string;
    messageId: string;
    message_id: string;
    publishTime: string;
    publish_time: string;
    attributes?: Record<string, string>;
  };
  subscription: string;
}

export interface PushDelivery {
  subscription: string;
  endpoint: string;
  mailbox: string;
  historyId: number;
  status?: number;
  error?: string;
  at: string;
}

export class PushHub {
  private subscriptions: PushSubscription[] = [];
  private log: PushDelivery[] = [];
  private inFlight = new Set<Promise<void>>();
  private nextMessageId = 2_000_000_000_000_000 + randomInt(0, 1_000_000);

  constructor(
    private readonly keys: SigningKeys,
    private readonly now: () => Date,
  ) {}

  addSubscription(input: PushSubscriptionInput): PushSubscription {
    if (!/^projects\/[^/]+\/topics\/[^/]+$/.test(input.topicName)) throw new TypeError('topicName must be projects/<project>/topics/<topic>');
    const endpoint = new URL(input.endpoint).toString();
    const project = input.topicName.split('/')[1]!;
    const subscription: PushSubscription = {
      topicName: input.topicName,
      endpoint,
      audience: input.audience ?? endpoint,
      serviceAccountEmail: input.serviceAccountEmail ?? DEFAULT_PUSH_SERVICE_ACCOUNT,
      name: input.name ?? `projects/${project}/subscriptions/${input.topicName.split('/')[3]}-push-${this.subscriptions.length + 1}`,
    };
    this.subscriptions.push(subscription);
    return subscription;
  }

  listSubscriptions(): PushSubscription[] {
    return [...this.subscriptions];
  }

  /** An RS256 token shaped like the OIDC token Pub/Sub attaches to authenticated pushes. */
  signPushToken(input: PushTokenInput): string {
    const iat = Math.floor((input.issuedAt ?? this.now()).getTime() / 1000);
    // Google's azp/sub for a service account is its numeric unique id; derive a stable one from the email.
    const numericId = `1${BigInt(`0x${createHash('sha256').update(input.email).digest('hex').slice(0, 15)}`).toString().padStart(20, '0')}`;
    return this.keys.signJwt({
      aud: input.audience,
      azp: numericId,
      email: input.email,
      email_verified: true,
      exp: iat + (input.expiresInSeconds ?? 3600),
      iat,
      iss: input.issuer ?? 'https://accounts.google.com',
      sub: numericId,
    });
  }

  notificationBody(emailAddress: string, historyId: number, subscription = 'projects/inboxtrail-sandbox/subscriptions/gmail-push'): PushBody {
    const messageId = String(this.nextMessageId++);
    const publishTime = this.now().toISOString();
    // Gmail publishes historyId as a JSON number (its docs show a string); receivers should accept both.
    const data = Buffer.from(JSON.stringify({ emailAddress, historyId })).toString('base64');
    return { message: { data, messageId, message_id: messageId, publishTime, publish_time: publishTime }, subscription };
  }

  private passesLabelFilter(mailbox: Mailbox, record: HistoryRecord): boolean {
    const watch = mailbox.watch;
    if (!watch || watch.labelIds.length === 0) return true;
    const touched = [...record.messageLabels, ...record.changedLabels].some((l) => watch.labelIds.includes(l));
    return watch.labelFilterBehavior === 'exclude' ? !touched : touched;
  }

  onHistory(mailbox: Mailbox, record: HistoryRecord): void {
    const watch = mailbox.watch;
    if (!watch || watch.expiration <= this.now().getTime() || !this.passesLabelFilter(mailbox, record)) return;
    for (const subscription of this.subscriptions.filter((s) => s.topicName === watch.topicName)) {
      this.deliver(subscription, mailbox.email, record.id);
    }
  }

  private deliver(subscription: PushSubscription, email: string, historyId: number): void {
    const entry: PushDelivery = { subscription: subscription.name, endpoint: subscription.endpoint, mailbox: email, historyId, at: this.now().toISOString() };
    this.log.push(entry);
    const body = this.notificationBody(email, historyId, subscription.name);
    const token = this.signPushToken({ audience: subscription.audience, email: subscription.serviceAccountEmail });
    const attempt = fetch(subscription.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'user-agent': 'APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
      .then(async (response) => {
        entry.status = response.status;
        await response.arrayBuffer();
      })
      .catch((error: unknown) => {
        entry.error = error instanceof Error ? error.message : String(error);
      })
      .finally(() => this.inFlight.delete(attempt));
    this.inFlight.add(attempt);
  }

  /** Resolves once every push started so far has been answered or has failed. */
  async flush(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  deliveries(): PushDelivery[] {
    return this.log.map((d) => ({ ...d }));
  }

  reset(): void {
    this.subscriptions = [];
    this.log = [];
  }
}
