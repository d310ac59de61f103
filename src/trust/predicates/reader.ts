/**
 * The one {@link AttestationReader}: parses each attestation's statement and predicate once, keyed by
 * the attestation's layer digest (content-addressed, so a cached parse can never be of other bytes),
 * and hands the policy the normalized facts. A re-decision of the same digest (decision TTL expired,
 * a policy reload) does not re-parse a 30 MiB SBOM; the hot path (cached decision) never gets here.
 */
import { RFC3161Timestamp } from '@sigstore/core';
import type { Digest } from '../../oci/index.ts';
import { FormatError } from './json.ts';
import { parseStatement } from './statement.ts';
import { parseCosignVuln, parseInTotoVulns, IN_TOTO_VULNS_PREDICATE_TYPE } from './vulns.ts';
import { CYCLONEDX_PREDICATE_TYPE, parseCycloneDx, parseSpdx } from './sbom.ts';
import { parseSlsaV02, parseSlsaV1, SLSA_V02_PREDICATE_TYPE } from './provenance.ts';
import { parseOpenVex } from './vex.ts';
import type {
  AttestationReader,
  AttestationRef,
  AttestationStatement,
  Parsed,
  Provenance,
  Sbom,
  VexDocument,
  VulnReport,
} from './types.ts';

interface Entry {
  /** What it weighs in the budget: the signed payload's bytes (its parse costs a few times that). */
  bytes: number;
  statement?: Parsed<AttestationStatement>;
  vulnerabilities?: Parsed<VulnReport>;
  sbom?: Parsed<Sbom>;
  provenance?: Parsed<Provenance>;
  vex?: Parsed<VexDocument>;
}

function attempt<T>(fn: () => T): Parsed<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (err instanceof FormatError) return { ok: false, reason: err.message };
    // A parser bug must become a reason (the gate fails), never a crash or a pass.
    return {
      ok: false,
      reason: `report format not understood: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

export interface CachingAttestationReaderOptions {
  /** Attestations whose parses are kept (least recently used dropped first). */
  maxEntries?: number;
  /**
   * Signed payload bytes whose parses are kept (least recently used dropped first): a parsed 30 MiB
   * SBOM holds a few times its size in memory, and 2,000 of them would not fit in any process.
   */
  maxBytes?: number;
}

/** Default {@link CachingAttestationReaderOptions.maxBytes}: 256 MiB of payloads. */
export const DEFAULT_READER_MAX_BYTES = 256 * 1024 * 1024;

function payloadBytes(found: AttestationRef): number {
  const c = found.bundle.content;
  return c.$case === 'dsseEnvelope' ? c.dsseEnvelope.payload.length : 0;
}

/** Parses attestation content once per attestation digest; counts parses (tests, the benchmark). */
export class CachingAttestationReader implements AttestationReader {
  readonly #entries = new Map<Digest, Entry>();
  readonly #max: number;
  readonly #maxBytes: number;
  #bytes = 0;
  /** Statements parsed from bytes so far (a cache hit does not count). */
  parses = 0;

  constructor(options: CachingAttestationReaderOptions = {}) {
    this.#max = options.maxEntries ?? 2_000;
    this.#maxBytes = options.maxBytes ?? DEFAULT_READER_MAX_BYTES;
  }

  /** Payload bytes whose parses are kept now (tests, metrics). */
  get keptBytes(): number {
    return this.#bytes;
  }

  #entry(found: AttestationRef): Entry {
    const hit = this.#entries.get(found.layerDigest);
    if (hit !== undefined) {
      // Refresh its place: Map iteration order is insertion order.
      this.#entries.delete(found.layerDigest);
      this.#entries.set(found.layerDigest, hit);
      return hit;
    }
    const entry: Entry = { bytes: payloadBytes(found) };
    // An attestation larger than the whole budget is parsed for this decision and not kept.
    if (entry.bytes > this.#maxBytes) return entry;
    while (
      this.#entries.size > 0 &&
      (this.#entries.size >= this.#max || this.#bytes + entry.bytes > this.#maxBytes)
    ) {
      const [oldest, dropped] = this.#entries.entries().next().value as [Digest, Entry];
      this.#entries.delete(oldest);
      this.#bytes -= dropped.bytes;
    }
    this.#entries.set(found.layerDigest, entry);
    this.#bytes += entry.bytes;
    return entry;
  }

  statement(found: AttestationRef): Parsed<AttestationStatement> {
    const e = this.#entry(found);
    if (e.statement === undefined) {
      this.parses++;
      e.statement = attempt(() => parseStatement(found.bundle));
    }
    return e.statement;
  }

  #predicate<T>(
    found: AttestationRef,
    key: 'vulnerabilities' | 'sbom' | 'provenance' | 'vex',
    parse: (st: AttestationStatement) => T,
  ): Parsed<T> {
    const e = this.#entry(found);
    const cached = e[key] as Parsed<T> | undefined;
    if (cached !== undefined) return cached;
    const st = this.statement(found);
    const out: Parsed<T> = st.ok ? attempt(() => parse(st.value)) : st;
    (e as unknown as Record<string, unknown>)[key] = out;
    return out;
  }

  vulnerabilities(found: AttestationRef): Parsed<VulnReport> {
    return this.#predicate(found, 'vulnerabilities', (st) =>
      st.predicateType === IN_TOTO_VULNS_PREDICATE_TYPE
        ? parseInTotoVulns(st.predicate)
        : parseCosignVuln(st.predicate),
    );
  }

  sbom(found: AttestationRef): Parsed<Sbom> {
    return this.#predicate(found, 'sbom', (st) =>
      st.predicateType.startsWith(CYCLONEDX_PREDICATE_TYPE)
        ? parseCycloneDx(st.predicate)
        : parseSpdx(st.predicate),
    );
  }

  provenance(found: AttestationRef): Parsed<Provenance> {
    return this.#predicate(found, 'provenance', (st) =>
      st.predicateType === SLSA_V02_PREDICATE_TYPE ? parseSlsaV02(st.predicate) : parseSlsaV1(st.predicate),
    );
  }

  vex(found: AttestationRef): Parsed<VexDocument> {
    return this.#predicate(found, 'vex', (st) => parseOpenVex(st.predicate));
  }

  signedAt(found: AttestationRef): number | undefined {
    // Called for verified attestations only: @sigstore/verify checked every tlog entry and every RFC 3161
    // token (against the trust root's timestamp authorities). A time counts only where it is signed:
    // integratedTime is covered by the entry's SET (inclusionPromise), not by an inclusion proof —
    // Rekor v2 entries have no SET and their integratedTime is whatever the bundle says — and a TSA
    // token's genTime is signed by the TSA. The earliest signed time is when it was signed at the latest.
    const material = found.bundle.verificationMaterial;
    const times = [
      ...material.tlogEntries
        .filter((e) => e.inclusionPromise !== undefined)
        .map((e) => Number(e.integratedTime) * 1000),
      ...(material.timestampVerificationData?.rfc3161Timestamps ?? []).map((t) => tsaTime(t.signedTimestamp)),
    ].filter((t) => Number.isFinite(t) && t > 0);
    return times.length > 0 ? Math.min(...times) : undefined;
  }
}

/** The genTime of a DER `TimeStampResp`; NaN when it does not parse (it verified, so it should). */
function tsaTime(der: Buffer): number {
  try {
    return RFC3161Timestamp.parse(Buffer.from(der)).signingTime.getTime();
  } catch {
    return Number.NaN;
  }
}
