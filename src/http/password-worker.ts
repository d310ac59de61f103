/**
 * Worker thread of {@link PasswordPool}: bcrypt comparisons, off the event loop that serves pulls.
 * Only erasable TypeScript here: Node runs this file directly (type stripping) in development.
 */
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

interface Job {
  id: number;
  password: string;
  /** The stored hash, or undefined for an unknown user: then a dummy hash of `cost` is compared. */
  hash: string | undefined;
  cost: number;
}

// One dummy hash per cost, so an unknown user costs exactly what a known one does.
const dummies = new Map<number, string>();

function dummy(cost: number): string {
  let hash = dummies.get(cost);
  if (hash === undefined) {
    hash = bcrypt.hashSync('pullwarden-unknown-user', cost);
    dummies.set(cost, hash);
  }
  return hash;
}

parentPort?.on('message', (job: Job) => {
  let ok: boolean;
  try {
    ok = bcrypt.compareSync(job.password, job.hash ?? dummy(job.cost)) && job.hash !== undefined;
  } catch {
    ok = false;
  }
  parentPort?.postMessage({ id: job.id, ok });
});
