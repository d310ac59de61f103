/**
 * The set-up the e2e suites share: the prerequisites check, a work dir, a real distribution registry,
 * optionally a private containerd, OCI layouts, the proxy, registries.conf and a
 * podman store — and one `close()` that stops all of it in reverse order, also after a set-up that
 * failed half-way (call it from `afterAll` as `await e2e?.close()`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestProxy } from './app.ts';
import type { TestProxy } from './app.ts';
import { startContainerd } from './containerd.ts';
import type { Containerd } from './containerd.ts';
import { writeOciLayout } from './oci-layout.ts';
import type { ImageSpec, IndexSpec, WrittenLayout } from './oci-layout.ts';
import { createPodmanStore } from './podman.ts';
import type { PodmanStore } from './podman.ts';
import { assertE2ePrerequisites } from './proc.ts';
import { startRegistry } from './registry.ts';
import type { Registry } from './registry.ts';
import { writeRegistriesConf } from './skopeo.ts';
import type { RegistryMapping } from './skopeo.ts';

export interface E2eOptions {
  /** Prefix of the work dir's name, e.g. `pw-e2e-tags-`. */
  prefix: string;
  /** Start a private containerd (root; adds containerd and ctr to the prerequisites). */
  containerd?: boolean;
  /** The suite pulls with podman (root; adds podman to the prerequisites). */
  podman?: boolean;
  /** More tools the suite needs on PATH (e.g. chromium). */
  tools?: readonly string[];
}

export interface E2e {
  /** The suite's temp dir (removed by `close`). */
  readonly work: string;
  readonly registry: Registry;
  /** The private containerd; only with `containerd: true`. */
  readonly containerd: Containerd;
  /** An OCI layout of `spec` in `work/<name>`, tagged `v1` (push it with pushLayout). */
  layout(name: string, spec: ImageSpec | IndexSpec): Promise<WrittenLayout>;
  /** The proxy on port 0 (see startTestProxy), closed by `close`. */
  proxy(config: Record<string, unknown>): Promise<TestProxy>;
  /** `work/<file>` as a registries.conf with these mappings; returns its path. */
  registriesConf(mappings: readonly RegistryMapping[], file?: string): Promise<string>;
  /** A fresh podman store (private root) whose pulls default to `registriesConf`, removed by `close`. */
  podman(registriesConf?: string): Promise<PodmanStore>;
  /** Run `cleanup` in `close`, before what was set up earlier. */
  defer(cleanup: () => unknown): void;
  close(): Promise<void>;
}

/** Check the prerequisites, make the work dir and start the registry (and containerd). */
export async function startE2e(options: E2eOptions): Promise<E2e> {
  const tools = ['docker-registry', 'skopeo', ...(options.tools ?? [])];
  if (options.containerd === true) tools.push('containerd', 'ctr');
  if (options.podman === true) tools.push('podman');
  assertE2ePrerequisites(tools, { needsRoot: options.containerd === true || options.podman === true });

  const work = await mkdtemp(join(tmpdir(), options.prefix));
  const cleanups: (() => unknown)[] = [() => rm(work, { recursive: true, force: true })];
  const defer = (cleanup: () => unknown): void => {
    cleanups.push(cleanup);
  };
  const close = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'e2e clean-up failed');
  };

  const started = await Promise.allSettled([
    startRegistry(),
    options.containerd === true ? startContainerd() : Promise.resolve(undefined),
  ]);
  for (const s of started)
    if (s.status === 'fulfilled' && s.value !== undefined) defer(() => s.value?.stop());
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    await close();
    throw failed.reason;
  }
  const registry = (started[0] as PromiseFulfilledResult<Registry>).value;
  const containerd = (started[1] as PromiseFulfilledResult<Containerd | undefined>).value;

  return {
    work,
    registry,
    get containerd(): Containerd {
      if (containerd === undefined) throw new Error('startE2e: containerd was not requested');
      return containerd;
    },
    layout: (name, spec) => writeOciLayout(join(work, name), spec, { tag: 'v1' }),
    async proxy(config) {
      const proxy = await startTestProxy(config);
      defer(() => proxy.close());
      return proxy;
    },
    registriesConf: (mappings, file = 'registries.conf') => writeRegistriesConf(join(work, file), mappings),
    async podman(registriesConf) {
      const store = await createPodmanStore(registriesConf === undefined ? {} : { registriesConf });
      defer(() => store.cleanup());
      return store;
    },
    defer,
    close,
  };
}
