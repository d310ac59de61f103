import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { RecentTags } from '../../../src/audit/index.ts';
import type { AuditEvent, AuditSink } from '../../../src/audit/index.ts';
import { decisionDetail } from '../../../src/policy/index.ts';
import type { Decision } from '../../../src/policy/index.ts';
import { parseManifest, RegistryError } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import { denialLabels, denyDetail, PullAudit, pullFacts } from '../../../src/service/index.ts';
import type { DenyDetail, ManifestResult, PullRequest } from '../../../src/service/index.ts';

const DIGEST = `sha256:${'a'.repeat(64)}` as Digest;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const LAYER = `sha256:${'b'.repeat(64)}` as Digest;
const request: PullRequest = {
  requestId: 'r1',
  client: '10.0.0.1',
  userAgent: 'containerd/1.6',
  method: 'GET',
  elapsedMs: 12.34,
};

/** A sink that keeps what it acknowledged, or refuses every append. */
function memorySink(fail = false): AuditSink & { events: AuditEvent[] } {
  const events: AuditEvent[] = [];
  return {
    events,
    append: (event) =>
      fail ? Promise.reject(new Error('disk full')) : (events.push(event), Promise.resolve()),
    health: () => ({ ok: !fail }),
    close: () => Promise.resolve(),
  };
}

function audit(sink: AuditSink, failClosed = false, recentTags = new RecentTags()): PullAudit {
  return new PullAudit({ sink, failClosed, recentTags }, pino({ level: 'silent' }));
}

function decision(over: Partial<Decision> = {}): Decision {
  return {
    result: 'allow',
    policy: 'p',
    reasons: ['allowed by policy "p"'],
    signers: [],
    checks: [],
    ...over,
  };
}

describe('pull audit facts', () => {
  it('names the tag of a manifest by tag and the digest of a request by digest', () => {
    expect(pullFacts('manifest', 'docker.io', 'library/nginx', '1.27')).toEqual({
      type: 'manifest',
      upstream: 'docker.io',
      repository: 'library/nginx',
      reference: '1.27',
      tag: '1.27',
    });
    expect(pullFacts('blob', 'docker.io', 'library/nginx', DIGEST)).toMatchObject({ digest: DIGEST });
    expect(pullFacts('blob', 'docker.io', 'library/nginx', DIGEST).tag).toBeUndefined();
    const tags = pullFacts('tags', 'docker.io', 'library/nginx', '');
    expect(tags.tag).toBeUndefined();
    expect(tags.digest).toBeUndefined();
  });

  it('gives the digest requests that follow a tag resolution the tag, and leaves out a restated reason', async () => {
    const sink = memorySink();
    const pulls = audit(sink);
    const byTag = pullFacts('manifest', 'docker.io', 'library/nginx', '1.27');
    const result: ManifestResult = {
      digest: DIGEST,
      mediaType: OCI_MANIFEST,
      size: 10,
      cache: 'miss',
      tag: '1.27',
      decision: decision(),
      parsed: parseManifest(
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: LAYER, size: 2 },
            layers: [],
          }),
        ),
        OCI_MANIFEST,
      ),
    };
    pulls.manifestAnswered(byTag, result, request.client);
    await pulls.record(byTag, request, { status: 200, bytes: 10 });
    const blob = pullFacts('blob', 'docker.io', 'library/nginx', LAYER);
    blob.cache = 'joined';
    pulls.followTag(blob, '10.0.0.2');
    await pulls.record(blob, request, { status: 200, bytes: 2 });
    expect(sink.events[0]).toMatchObject({ tag: '1.27', digest: DIGEST, decision: 'allow', policy: 'p' });
    expect(sink.events[0]?.reasons).toBeUndefined();
    expect(sink.events[0]?.signers).toBeUndefined();
    expect(sink.events[0]?.durationMs).toBe(12.3);
    // Another client's pull of the same blob still reads as part of the tag's story; joined is a miss.
    expect(sink.events[1]).toMatchObject({ type: 'blob', tag: '1.27', digest: LAYER, cache: 'miss' });
  });

  it('records a policy denial with the digest, tag, reasons and signers of its detail', async () => {
    const sink = memorySink();
    const pulls = audit(sink);
    const denied = decision({ result: 'deny', reasons: ['policy "p": no signature found'] });
    const detail = {
      ...decisionDetail(denied),
      upstream: 'docker.io',
      repository: 'library/nginx',
      digest: DIGEST,
      tag: '1.27',
    } satisfies DenyDetail;
    const err = new RegistryError('DENIED', 'denied by policy "p"', { detail });
    const facts = pullFacts('manifest', 'docker.io', 'library/nginx', '1.27');
    await pulls.record(facts, request, { status: 403, bytes: 0, error: err });
    expect(sink.events[0]).toMatchObject({
      digest: DIGEST,
      tag: '1.27',
      decision: 'deny',
      policy: 'p',
      reasons: ['policy "p": no signature found'],
      signers: [],
      status: 403,
    });
    expect(denialLabels(denyDetail(err))).toEqual({ policy: 'p', reason: 'no-signature' });
  });

  it('records a refusal without a decision (401) with its message, and a failure with no decision', async () => {
    const sink = memorySink();
    const pulls = audit(sink);
    const facts = pullFacts('blob', 'docker.io', 'library/nginx', DIGEST);
    const unauthorized = new RegistryError('UNAUTHORIZED', 'authentication required', {
      detail: { challenge: 'x' },
    });
    await pulls.record(facts, request, { status: 401, bytes: 0, error: unauthorized });
    await pulls.record(facts, request, {
      status: 503,
      bytes: 0,
      error: new RegistryError('UNAVAILABLE', 'down'),
    });
    expect(sink.events[0]).toMatchObject({ decision: 'deny', reasons: ['authentication required'] });
    expect(sink.events[1]?.decision).toBeUndefined();
  });

  it('labels a rule refusal by its reason and an upstream refusal without detail as policy', () => {
    const moved = new RegistryError('DENIED', 'moved', {
      detail: {
        reason: 'tag-moved',
        policy: 'pinned',
        tag: 'v1',
        pinned: DIGEST,
        digest: LAYER,
      } satisfies DenyDetail,
    });
    expect(denialLabels(denyDetail(moved))).toEqual({ policy: 'pinned', reason: 'tag-moved' });
    expect(denialLabels(denyDetail(new RegistryError('DENIED', 'upstream said no')))).toEqual({
      policy: '(none)',
      reason: 'policy',
    });
    expect(
      denyDetail(new RegistryError('UNAUTHORIZED', 'x', { detail: { challenge: 'x' } })),
    ).toBeUndefined();
  });

  it('refuses the request when the event cannot be written and the trail fails closed', async () => {
    const facts = pullFacts('blob', 'docker.io', 'library/nginx', DIGEST);
    await expect(
      audit(memorySink(true), true).record(facts, request, { status: 200, bytes: 0 }),
    ).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    await expect(
      audit(memorySink(true), false).record(facts, request, { status: 200, bytes: 0 }),
    ).resolves.toBeUndefined();
  });
});
