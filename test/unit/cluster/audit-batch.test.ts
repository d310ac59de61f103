import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/index.ts';
import { AuditBatcher } from '../../../src/cluster/audit-batch.ts';
import type { AuditBatchReply } from '../../../src/cluster/audit-batch.ts';

function event(requestId: string): AuditEvent {
  return {
    time: '2026-12-03T16:00:00.000Z',
    type: 'manifest',
    requestId,
    client: '127.0.0.1',
    identity: undefined,
    userAgent: undefined,
    method: 'HEAD',
    upstream: 'docker.io',
    repository: 'library/nginx',
    reference: '1.27',
    bytes: 0,
    durationMs: 1,
    status: 200,
  };
}

/** A batcher whose flushes run when the test says so, and whose sends the test answers. */
function harness(maxBatch?: number) {
  const flushes: (() => void)[] = [];
  const sent: { events: AuditEvent[]; answer: (r: AuditBatchReply) => void; fail: (e: Error) => void }[] = [];
  const batcher = new AuditBatcher(
    (events) =>
      new Promise<AuditBatchReply>((answer, fail) => {
        sent.push({ events, answer, fail });
      }),
    { schedule: (f) => flushes.push(f), ...(maxBatch === undefined ? {} : { maxBatch }) },
  );
  const runFlushes = () => flushes.splice(0).forEach((f) => f());
  return { batcher, sent, runFlushes, flushes };
}

const states = <T>(ps: Promise<T>[]) => {
  const out: string[] = ps.map(() => 'pending');
  ps.forEach((p, i) => {
    p.then(
      () => (out[i] = 'resolved'),
      (e: unknown) => (out[i] = `rejected: ${(e as Error).message}`),
    );
  });
  return out;
};

describe('AuditBatcher', () => {
  it('sends the events of one turn in one message, and resolves none before the reply', async () => {
    const { batcher, sent, runFlushes, flushes } = harness();
    const done = states([batcher.append(event('a')), batcher.append(event('b')), batcher.append(event('c'))]);
    expect(flushes).toHaveLength(1);
    expect(sent).toHaveLength(0);
    runFlushes();
    expect(sent.map((s) => s.events.map((e) => e.requestId))).toEqual([['a', 'b', 'c']]);
    await Promise.resolve();
    expect(done).toEqual(['pending', 'pending', 'pending']);
    sent[0]!.answer([null, null, null]);
    await new Promise((r) => setImmediate(r));
    expect(done).toEqual(['resolved', 'resolved', 'resolved']);
  });

  it('rejects exactly the events the primary could not make durable', async () => {
    const { batcher, sent, runFlushes } = harness();
    const done = states([batcher.append(event('a')), batcher.append(event('b'))]);
    runFlushes();
    sent[0]!.answer([null, 'ENOSPC: no space left on device']);
    await new Promise((r) => setImmediate(r));
    expect(done).toEqual(['resolved', 'rejected: ENOSPC: no space left on device']);
  });

  it('rejects every event of a batch that could not be delivered or was answered short', async () => {
    const { batcher, sent, runFlushes } = harness();
    const lost = states([batcher.append(event('a')), batcher.append(event('b'))]);
    runFlushes();
    sent[0]!.fail(new Error('the cluster primary is gone'));
    const short = states([batcher.append(event('c')), batcher.append(event('d'))]);
    runFlushes();
    sent[1]!.answer([null]);
    await new Promise((r) => setImmediate(r));
    expect(lost).toEqual(['rejected: the cluster primary is gone', 'rejected: the cluster primary is gone']);
    expect(short.every((s) => s.startsWith('rejected: the cluster primary answered 1 of 2'))).toBe(true);
  });

  it('sends the next batch without waiting for the one in flight, and splits at maxBatch', async () => {
    const { batcher, sent, runFlushes } = harness(2);
    const first = states([batcher.append(event('a')), batcher.append(event('b'))]);
    expect(sent).toHaveLength(1); // full: sent at once
    const second = states([batcher.append(event('c'))]);
    runFlushes();
    expect(sent.map((s) => s.events.length)).toEqual([2, 1]);
    sent[1]!.answer([null]);
    await new Promise((r) => setImmediate(r));
    expect(second).toEqual(['resolved']);
    expect(first).toEqual(['pending', 'pending']);
    sent[0]!.answer([null, null]);
    await new Promise((r) => setImmediate(r));
    expect(first).toEqual(['resolved', 'resolved']);
  });
});
