/**
 * Deterministic container images written as OCI image layouts on disk, in pure TypeScript.
 *
 * Layers are real gzip-compressed tar archives (containerd and podman unpack what they pull), each
 * holding one file of pseudo-random bytes drawn from AES-256-CTR keyed by the seed. The same seed
 * gives byte-identical blobs and therefore the same digests; a different seed gives a different
 * image. Big layers are generated and hashed as a stream, never held in memory.
 *
 * Layout written (image-layout spec v1.0):
 *   DIR/oci-layout                    {"imageLayoutVersion":"1.0.0"}
 *   DIR/index.json                    one descriptor, annotated org.opencontainers.image.ref.name=<tag>
 *   DIR/blobs/sha256/<hex>            manifests, index, configs, layers
 * Push it with `pushLayout()` from skopeo.ts, which copies from `WrittenLayout.source`.
 *
 * Docker media types: skopeo 1.9's `oci:` transport ignores index.json descriptors whose media type
 * is not OCI ("no descriptor found for reference"), so for `mediaTypes: 'docker'` the same directory
 * is also a containers/image `dir:` transport directory (`version`, `manifest.json`,
 * `<hex>.manifest.json` per list instance, blobs hard-linked as `<hex>`) and `source` is `dir:DIR`.
 */
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** `oci` writes OCI media types; `docker` writes Docker schema2 (manifest list for indexes). */
export type MediaTypeFamily = 'oci' | 'docker';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface LayerDescriptor extends Descriptor {
  /** sha256 of the uncompressed tar, as listed in the config's rootfs.diff_ids. */
  diffId: string;
}

export interface WrittenImage extends Descriptor {
  platform: Platform;
  config: Descriptor;
  layers: LayerDescriptor[];
  /** The manifest exactly as written (its sha256 is `digest`). */
  manifest: string;
}

export interface WrittenLayout {
  dir: string;
  /** containers/image transport reference to copy from: `oci:DIR:TAG`, or `dir:DIR` for Docker media types. */
  source: string;
  /** Value of org.opencontainers.image.ref.name in index.json; `oci:${dir}:${tag}` names it. */
  tag: string;
  /** Top-level descriptor: the image manifest, or the index / manifest list. */
  digest: string;
  mediaType: string;
  size: number;
  /** One entry for a single image; one per platform, in order, for an index. */
  images: WrittenImage[];
  /** The index / manifest list exactly as written, when the layout holds one. */
  index?: string;
  /** Sum of all blob sizes (manifests, configs, layers). */
  totalBytes: number;
}

export interface ImageSpec {
  /** Same seed, same bytes. */
  seed: string;
  /** Number of layers (default 2). */
  layers?: number;
  /** Bytes of random payload per layer (default 16 KiB). */
  layerBytes?: number;
  /** gzip level (default 6). Random data does not compress; 0 or 1 keeps big layers fast. */
  gzipLevel?: number;
  mediaTypes?: MediaTypeFamily;
  /** Default linux/amd64. */
  platform?: Platform;
}

export interface IndexSpec extends Omit<ImageSpec, 'platform'> {
  /** One image per platform, each with its own layers (seeded by seed + platform). */
  platforms: Platform[];
}

const FIXED_TIME = '2024-01-01T00:00:00Z';
const FIXED_MTIME = Math.floor(Date.parse(FIXED_TIME) / 1000);

function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function platformString(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined).join('/');
}

/** Pseudo-random bytes from a seed: AES-256-CTR keystream over zeros, in chunks of ≤ 1 MiB. */
function* randomChunks(seed: string, total: number): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const chunk = 1 << 20;
  const zeros = Buffer.alloc(chunk);
  for (let left = total; left > 0; left -= chunk) {
    yield cipher.update(left >= chunk ? zeros : zeros.subarray(0, left));
  }
}

function octal(value: number, width: number): string {
  // width includes the terminating NUL.
  const s = value.toString(8);
  if (s.length > width - 1) throw new Error(`tar field overflow: ${value}`);
  return s.padStart(width - 1, '0') + '\0';
}

/** A POSIX ustar header for one regular file (see `man 5 tar`, "POSIX ustar Archives"). */
export function ustarHeader(name: string, size: number, mode = 0o644): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(FIXED_MTIME, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum is computed with its own field as spaces
  h.write('0', 156, 'ascii'); // typeflag: regular file
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/** One-file tar archive as a stream of buffers: header, content, padding, two zero blocks. */
function* tarOneFile(name: string, size: number, content: Iterable<Buffer>): Generator<Buffer> {
  yield ustarHeader(name, size);
  yield* content;
  const pad = (512 - (size % 512)) % 512;
  if (pad > 0) yield Buffer.alloc(pad);
  yield Buffer.alloc(1024);
}

async function writeBlob(dir: string, mediaType: string, data: string): Promise<Descriptor> {
  const digest = sha256(data);
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), data);
  return { mediaType, digest, size: Buffer.byteLength(data) };
}

async function writeLayer(
  dir: string,
  mediaType: string,
  seed: string,
  fileName: string,
  bytes: number,
  gzipLevel: number,
): Promise<LayerDescriptor> {
  const diff = createHash('sha256');
  const compressed = createHash('sha256');
  let size = 0;
  const tmp = join(dir, 'blobs', 'sha256', `.tmp-${randomUUID()}`);
  await pipeline(
    Readable.from(tarOneFile(fileName, bytes, randomChunks(seed, bytes))),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        diff.update(chunk);
        yield chunk;
      }
    },
    // Node writes a fixed gzip header (mtime 0), so output is stable for the same input.
    createGzip({ level: gzipLevel }),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        compressed.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(tmp),
  );
  const digest = `sha256:${compressed.digest('hex')}`;
  await rename(tmp, join(dir, 'blobs', 'sha256', digest.slice(7)));
  return { mediaType, digest, size, diffId: `sha256:${diff.digest('hex')}` };
}

async function writeImage(dir: string, spec: ImageSpec, platform: Platform): Promise<WrittenImage> {
  const docker = spec.mediaTypes === 'docker';
  const layerCount = spec.layers ?? 2;
  const layerBytes = spec.layerBytes ?? 16 * 1024;
  const tagSeed = `${spec.seed}|${platformString(platform)}`;
  const short = createHash('sha256').update(tagSeed).digest('hex').slice(0, 12);
  const layers: LayerDescriptor[] = [];
  for (let i = 0; i < layerCount; i++) {
    layers.push(
      await writeLayer(
        dir,
        docker ? MediaTypes.dockerLayerGzip : MediaTypes.ociLayerGzip,
        `${tagSeed}|layer-${i}`,
        `pullwarden-${short}-layer-${i}.bin`,
        layerBytes,
        spec.gzipLevel ?? 6,
      ),
    );
  }
  const config = await writeBlob(
    dir,
    docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig,
    JSON.stringify({
      created: FIXED_TIME,
      architecture: platform.architecture,
      ...(platform.variant === undefined ? {} : { variant: platform.variant }),
      os: platform.os,
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['/bin/true'],
        Labels: { 'org.pullwarden.test.seed': spec.seed },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: FIXED_TIME, created_by: `pullwarden test layer ${i}` })),
    }),
  );
  const descriptor = (d: Descriptor): Descriptor => ({
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
  });
  const manifestMediaType = docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest;
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: descriptor(config),
    layers: layers.map(descriptor),
  });
  const written = await writeBlob(dir, manifestMediaType, manifest);
  return { ...written, platform, config, layers, manifest };
}

/** Makes DIR also a `dir:` transport directory (Directory Transport Version 1.1) for the same image. */
async function writeDirTransport(
  dir: string,
  top: string,
  images: readonly WrittenImage[],
  isIndex: boolean,
): Promise<void> {
  await writeFile(join(dir, 'version'), 'Directory Transport Version: 1.1\n');
  await writeFile(join(dir, 'manifest.json'), top);
  if (isIndex) {
    for (const img of images)
      await writeFile(join(dir, `${img.digest.slice(7)}.manifest.json`), img.manifest);
  }
  for (const name of await readdir(join(dir, 'blobs', 'sha256'))) {
    if (name.startsWith('.')) continue;
    await rm(join(dir, name), { force: true });
    await link(join(dir, 'blobs', 'sha256', name), join(dir, name));
  }
}

/**
 * Writes a single image (`ImageSpec`) or a multi-platform index (`IndexSpec`) as an OCI image
 * layout in `dir` (created if missing; use a fresh dir per image), tagged `tag` (default
 * `latest`), and returns every digest and size for assertions.
 */
export async function writeOciLayout(
  dir: string,
  spec: ImageSpec | IndexSpec,
  { tag = 'latest' }: { tag?: string } = {},
): Promise<WrittenLayout> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const docker = spec.mediaTypes === 'docker';
  const images: WrittenImage[] = [];
  let top: Descriptor;
  let index: string | undefined;
  if ('platforms' in spec) {
    for (const p of spec.platforms) images.push(await writeImage(dir, spec, p));
    const mediaType = docker ? MediaTypes.dockerManifestList : MediaTypes.ociIndex;
    index = JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: images.map((img) => ({
        mediaType: img.mediaType,
        digest: img.digest,
        size: img.size,
        platform: img.platform,
      })),
    });
    top = await writeBlob(dir, mediaType, index);
  } else {
    const image = await writeImage(dir, spec, spec.platform ?? { os: 'linux', architecture: 'amd64' });
    images.push(image);
    top = image;
  }
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: top.mediaType,
          digest: top.digest,
          size: top.size,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  if (docker) await writeDirTransport(dir, index ?? images[0]!.manifest, images, index !== undefined);
  const totalBytes =
    (index === undefined ? 0 : top.size) +
    images.reduce((n, img) => n + img.size + img.config.size + img.layers.reduce((m, l) => m + l.size, 0), 0);
  const result: WrittenLayout = {
    dir,
    source: docker ? `dir:${dir}` : `oci:${dir}:${tag}`,
    tag,
    digest: top.digest,
    mediaType: top.mediaType,
    size: top.size,
    images,
    totalBytes,
  };
  if (index !== undefined) result.index = index;
  return result;
}

/** Ready-made specs for the e2e suites. */
export const images = {
  /** linux/amd64, OCI media types, 2 small layers. */
  singleArch: (seed: string): ImageSpec => ({ seed, layers: 2 }),
  /** OCI index with linux/amd64 and linux/arm64 images. */
  twoPlatformIndex: (seed: string): IndexSpec => ({
    seed,
    layers: 2,
    platforms: [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ],
  }),
  /** Docker schema2 manifest with Docker config and layer media types. */
  dockerSchema2: (seed: string): ImageSpec => ({ seed, layers: 2, mediaTypes: 'docker' }),
  /** One incompressible layer of `bytes` (default 100 MiB), stored with gzip level 0. */
  big: (seed: string, bytes = 100 * 1024 * 1024): ImageSpec => ({
    seed,
    layers: 1,
    layerBytes: bytes,
    gzipLevel: 0,
  }),
};
