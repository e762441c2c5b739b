export { isAutomaticReply } from './auto-reply.js';
export { parseDeliveryStatus } from './delivery-status.js';
export { readBounceNotice } from './read-notice.js';
export { classOf, finishRecipient, reasonOf, statusFromText } from './status.js';
export type { BounceClass, BounceNotice, BounceReason, FailedRecipient, NoticeFormat } from './types.js';
