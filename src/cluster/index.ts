/** Several serving processes on one address (`server.workers`): the primary and the worker side. */
export { MAX_AUTO_WORKERS, resolveWorkers, startCluster } from './primary.ts';
export type { ClusterHandle } from './primary.ts';
export { isClusterWorker, workerBindings } from './worker.ts';
export type { WorkerBindings } from './worker.ts';
