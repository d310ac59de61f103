import { describe, expectTypeOf, it } from 'vitest';
import type { LoadedUpstream, UpstreamConfig } from '../../../src/config/index.ts';
import type { UndiciUpstreamConfig } from '../../../src/upstream/index.ts';

// The upstream module defines its own options and never imports the config schema; these checks are
// what keeps the two in step (tsc --noEmit runs them; vitest only reports the test).
describe('upstream options', () => {
  it('take the parsed upstream config as it is', () => {
    expectTypeOf<UpstreamConfig>().toExtend<UndiciUpstreamConfig>();
  });

  it('take a loaded upstream (URL filled in, secret resolved) as the app passes it', () => {
    expectTypeOf<LoadedUpstream>().toExtend<UndiciUpstreamConfig>();
  });
});
