/**
 * The trust material store: the configured roots and keys (roots.ts) and signature verification
 * against them (verify.ts), with the memo that keeps a re-decision from verifying again.
 *
 * Built once from config by {@link TrustMaterialStore.load}; `verify` is synchronous and CPU only.
 */
import type { Digest } from '../oci/index.ts';
import { subjectMatcher } from './identity.ts';
import { TrustRoots } from './roots.ts';
import type { TrustMaterialConfig, TrustMaterialStoreOptions } from './roots.ts';
import type { Attestor, FoundSignature, SignatureVerifier, VerifyOutcome } from './types.ts';
import { outcomeOf, verifySignature } from './verify.ts';

/**
 * The configured trust roots and keys, and the {@link SignatureVerifier} over them (see
 * {@link verifySignature} for what a verification checks). Any exception becomes `ok: false`.
 */
export class TrustMaterialStore implements SignatureVerifier {
  readonly #roots: TrustRoots;
  readonly #matchers = new Map<string, RegExp | undefined>();
  /**
   * Outcomes per found signature object (its bytes never change) and attestor, subject and trust
   * version: a re-decision within the evidence memo's lifetime does not hash a 30 MiB payload again.
   */
  readonly #outcomes = new WeakMap<FoundSignature, Map<string, VerifyOutcome>>();

  private constructor(roots: TrustRoots) {
    this.#roots = roots;
  }

  /** Read roots and keys, build the verifiers; with `options.refresh`, start the TUF refresh timer. */
  static async load(
    config: TrustMaterialConfig,
    options: TrustMaterialStoreOptions = {},
  ): Promise<TrustMaterialStore> {
    return new TrustMaterialStore(await TrustRoots.load(config, options));
  }

  /** A hash of every loaded root and key (with their names): part of every decision cache key. */
  get version(): string {
    return this.#roots.version;
  }

  /**
   * Where the public-good root in use came from: the one embedded in `@sigstore/tuf` until a TUF
   * refresh succeeds, then the mirror and time of that refresh. Undefined without a public-good root.
   */
  get publicGoodOrigin(): string | undefined {
    return this.#roots.publicGoodOrigin;
  }

  /** Names of the configured roots and keys (for config checks and `pullwarden verify`). */
  get names(): { roots: string[]; keys: string[] } {
    return this.#roots.names;
  }

  verify(found: FoundSignature, attestor: Attestor, subject: Digest): VerifyOutcome {
    const key = `${this.#roots.version}\0${subject}\0${JSON.stringify(attestor)}`;
    let outcomes = this.#outcomes.get(found);
    const hit = outcomes?.get(key);
    if (hit !== undefined) return hit;
    let outcome: VerifyOutcome;
    try {
      outcome = verifySignature(this.#roots, found, attestor, subject, (keyless) => this.#matcher(keyless));
    } catch (err) {
      outcome = outcomeOf(err);
    }
    if (outcomes === undefined) this.#outcomes.set(found, (outcomes = new Map<string, VerifyOutcome>()));
    outcomes.set(key, outcome);
    return outcome;
  }

  /**
   * Fetch public-good roots over TUF now; on success swap them in (changing `version` if they
   * changed), on failure keep the last good ones. Resolves true when a root changed.
   */
  async refresh(): Promise<boolean> {
    return await this.#roots.refresh();
  }

  /** Stop the refresh timer. */
  close(): void {
    this.#roots.close();
  }

  #matcher(attestor: { subject?: string; subjectRegExp?: string }): RegExp | undefined {
    const cacheKey = JSON.stringify([attestor.subject, attestor.subjectRegExp]);
    if (!this.#matchers.has(cacheKey)) this.#matchers.set(cacheKey, subjectMatcher(attestor));
    return this.#matchers.get(cacheKey);
  }
}
