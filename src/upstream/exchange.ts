import type { Readable } from 'node:stream';
import type { UpstreamRequestKind } from './options.ts';

/** One request the upstream client makes (the same exchange is sent again on a retry). */
export interface Exchange {
  kind: UpstreamRequestKind;
  method: 'GET' | 'HEAD';
  url: URL;
  headers: Record<string, string>;
  /** Repository the request is about: names the token scope and appears in error messages. */
  repository: string;
  /** Human description for messages, e.g. `manifest library/nginx:1.27`. Never holds secrets. */
  what: string;
  /** Send registry credentials (only ever to the configured registry origin). */
  authenticate: boolean;
  signal: AbortSignal | undefined;
}

/** The parts of an undici response the upstream modules read (an undici `ResponseData` fits). */
export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}
