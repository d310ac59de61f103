/**
 * The app layer's public surface (what `pullwarden serve` and `check` load, lazily): the composition
 * root (./app/compose.ts), the process lifecycle (./app/lifecycle.ts) and the `check` dry run
 * (./app/check.ts). The commands that start no server use ./app/tools.ts.
 */
export { buildApp } from './app/compose.ts';
export type { App, BuildOptions } from './app/compose.ts';
export { startDeployment, startServer } from './app/lifecycle.ts';
export type { DeploymentHandle, ServerHandle } from './app/lifecycle.ts';
export { checkImage } from './app/check.ts';
export type { CheckResult } from './service/index.ts';
export { createLogger } from './app/logger.ts';
