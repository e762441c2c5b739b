import { campaignPages } from './campaigns.pages.js';
import { mailboxPages } from './mailboxes.pages.js';
import { resultsPages } from './results.pages.js';
import type { AppPageGroup } from './web.routes.js';

/** The page groups under /app, in navigation order. */
export const APP_PAGE_GROUPS: AppPageGroup[] = [mailboxPages, campaignPages, resultsPages];
