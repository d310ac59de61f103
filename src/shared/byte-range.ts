/**
 * Inclusive byte range, as in HTTP `Range: bytes=start-end` (RFC 9110 §14.1.2): http parses it from
 * the request, the blob store reads it.
 */
export interface ByteRange {
  start: number;
  end: number;
}
