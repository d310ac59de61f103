import { UpstreamErrors } from '../../../src/upstream/errors.ts';
import type { UpstreamRefusal } from '../../../src/upstream/options.ts';

/** A logger that drops everything. */
export const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** The error builder of upstream `registry.example`, with the refusals it counted and the warnings it logged. */
export function upstreamErrors(
  timeouts = { connectTimeout: 1_000, headersTimeout: 2_000, bodyTimeout: 3_000 },
): { errors: UpstreamErrors; refused: UpstreamRefusal[]; warned: object[] } {
  const refused: UpstreamRefusal[] = [];
  const warned: object[] = [];
  const log = { ...quiet, warn: (obj: object) => void warned.push(obj) };
  const errors = new UpstreamErrors({
    host: 'registry.example',
    config: timeouts,
    log,
    onRefused: (reason) => refused.push(reason),
  });
  return { errors, refused, warned };
}
