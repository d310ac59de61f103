import type { Digest } from '../oci/index.ts';
import type { Decision, Policy } from '../policy/index.ts';
import type { RegistryService } from './registry-service.ts';
import { resolveImageReference } from './resolve-target.ts';

/** What `pullwarden check` learns about an image reference. */
export interface CheckResult {
  reference: string;
  upstream: string;
  repository: string;
  digest: Digest;
  mediaType: string;
  decision: Decision | undefined;
  policy: Policy | undefined;
}

/**
 * The `check` use case: resolve an image reference as users write it, then resolve, discover and
 * verify it exactly as a pull would (the same service and gate code), and say which policy applied.
 * DENIED (thrown) when the reference names an upstream that is not configured.
 */
export async function checkReference(
  service: RegistryService,
  reference: string,
  defaultUpstream: string | undefined,
): Promise<CheckResult> {
  const { target, reference: manifestRef } = resolveImageReference(reference, {
    resolveHost: (host) => service.resolveHost(host),
    defaultUpstream,
  });
  const result = await service.check(target, manifestRef);
  return {
    reference,
    upstream: target.upstream,
    repository: target.repository,
    digest: result.digest,
    mediaType: result.mediaType,
    decision: result.decision,
    policy: service.gate?.context.engine.match(target.upstream, target.repository),
  };
}
