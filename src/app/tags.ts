import type { LoadedConfig } from '../config/index.ts';
import { defaultManifestAccept, isNotFoundError, RegistryError } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import { resolveImageReference, TagGuard } from '../service/index.ts';
import type { Target, TagHistoryEntry, TagPin } from '../service/index.ts';
import { UndiciUpstream } from '../upstream/index.ts';
import { silentLogger } from './logger.ts';
import { openConfiguredMetadataStore } from './metadata.ts';
import { upstreamNames } from './upstream-names.ts';

/** A tag on a configured upstream, as `pullwarden tags …` names it. */
export interface TagRef extends Target {
  tag: string;
  /** `<upstream>/<repository>:<tag>`, for messages. */
  text: string;
}

/** The tag rules' state of a deployment (pins, history), for `pullwarden tags …`. */
export interface TagAdmin {
  /** `<host>/<repository>:<tag>` against the configured upstreams (and their aliases); DENIED otherwise. */
  resolve(input: string): TagRef;
  history(ref: TagRef): Promise<TagHistoryEntry[]>;
  pin(ref: TagRef): Promise<TagPin | undefined>;
  setPin(ref: TagRef, digest: Digest): Promise<void>;
  unpin(ref: TagRef): Promise<void>;
  /**
   * Whether the upstream has `digest` in the repository (HEAD of the manifest by digest): a pin to a
   * digest that does not exist there would refuse or break every pull of the tag. Throws when the
   * upstream cannot answer.
   */
  upstreamHas(ref: TagRef, digest: Digest): Promise<boolean>;
  close(): Promise<void>;
}

/** Open the configured metadata store (the one the proxy shares) for the tag commands. */
export async function openTagAdmin(config: LoadedConfig): Promise<TagAdmin> {
  const metadata = await openConfiguredMetadataStore(config);
  const guard = new TagGuard({ metadata, logger: silentLogger() });
  const names = upstreamNames(config);
  return {
    resolve(input) {
      const { target, tag } = resolveImageReference(input, names);
      if (tag === undefined) throw new RegistryError('MANIFEST_INVALID', `${input}: a tag is needed`);
      return { ...target, tag, text: `${target.upstream}/${target.repository}:${tag}` };
    },
    history: (ref) => guard.history(ref.upstream, ref.repository, ref.tag),
    pin: (ref) => guard.pin(ref.upstream, ref.repository, ref.tag),
    setPin: (ref, digest) => guard.setPin(ref.upstream, ref.repository, ref.tag, digest),
    unpin: (ref) => guard.unpin(ref.upstream, ref.repository, ref.tag),
    upstreamHas: (ref, digest) => upstreamHas(config, ref, digest),
    close: () => metadata.close(),
  };
}

async function upstreamHas(config: LoadedConfig, ref: TagRef, digest: Digest): Promise<boolean> {
  const upstreamConfig = config.upstreams[ref.upstream];
  if (upstreamConfig === undefined)
    throw new RegistryError('DENIED', `upstream ${ref.upstream} is not configured`);
  const upstream = new UndiciUpstream({
    host: ref.upstream,
    config: upstreamConfig,
    maxManifestBytes: config.server.maxManifestBytes,
  });
  try {
    const head = await upstream.headManifest(ref.repository, digest, { accept: defaultManifestAccept });
    return head.digest === digest;
  } catch (error) {
    if (isNotFoundError(error)) return false;
    throw error;
  } finally {
    await upstream.close();
  }
}
